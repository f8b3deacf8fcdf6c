"""Weights of the reference implementations, renamed for :class:`~utils.model.feature_varnet.FeatureVarNet`.

Two layouts are understood, both recognised from their key names alone:

- ``"fastmri"``: ``fastmri.models.VarNet`` (``sens_net.norm_unet.unet.*``, ``cascades.<i>.dc_weight``,
  ``cascades.<i>.model.unet.*``), e.g. fastMRI's published ``{knee,brain}_leaderboard_state_dict.pt``;
- ``"geekseek"``: the 2025 entry's ``FlexibleCascadeVarNet(variant="dlka")`` (``feat_cascades.<i>.*``,
  ``image_cascades.<i>.*``, ``encoder.encoder.0.*``, ``decoder.decoder.*``);
- ``"promptmr"``: the 2025 winner's (sMaRtIfy) PromptMR+ (``sens_net.norm_unet.unet.feat_extract.*``,
  ``cascades.<i>.model.unet.*``), converted for :class:`~utils.model.promptmr.PromptMRPlus` by
  :mod:`utils.model.promptmr.reference_keys`; its config carries ``_target_`` and none of
  :data:`REFERENCE_OPTIONS` (FeatureVarNet's).

:func:`convert_state_dict` infers the architecture (cascade counts, channels, pools, LSKA kernel) from the
tensor names and shapes and returns this repository's model config plus the renamed state dict; keys that
it does not know, or that the inferred network lacks, end in a :class:`ValueError` naming them.
The entry's state dict repeats the shared encoder and decoder under every feature cascade and holds a
``zero`` buffer per cascade; the copies must equal the shared tensors and are dropped.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping

import torch

from utils.model.lska import LSKA_KERNELS
from utils.model.promptmr.reference_keys import convert_promptmr_state_dict, is_promptmr_state_dict

__all__ = ["LAYOUTS", "REFERENCE_OPTIONS", "detect_layout", "convert_state_dict"]

LAYOUTS = ("fastmri", "geekseek", "promptmr")
# the model options under which FeatureVarNet computes what both references compute (golden-tested)
REFERENCE_OPTIONS = {"acs_lines": "symmetric", "feature_padding": "reflect", "norm_eps": 0.0, "lska_gate": "bounded"}

# fastMRI ConvBlock: Conv, InstanceNorm, LeakyReLU, Dropout, Conv, ... -> ours without the Dropout
_CONV_INDEX = {"0": "0", "4": "3"}
# LSKA parts: the entry's names -> ours
_LSKA_NAMES = {
    "attn.proj_1": "layers.2.proj_in",
    "attn.proj_2": "layers.2.proj_out",
    "attn.spatial_gating_unit.conv0h": "layers.2.lska.attention.0",
    "attn.spatial_gating_unit.conv0v": "layers.2.lska.attention.1",
    "attn.spatial_gating_unit.conv_spatial_h": "layers.2.lska.attention.2",
    "attn.spatial_gating_unit.conv_spatial_v": "layers.2.lska.attention.3",
    "attn.spatial_gating_unit.conv1": "layers.2.lska.attention.4",
    "conv": "layers.0",
}


def detect_layout(state_dict: Mapping[str, Any]) -> str:
    """``"fastmri"``, ``"geekseek"`` or ``"promptmr"`` from the key names; ValueError for anything else."""
    keys = list(state_dict)
    if any(key.startswith("feat_cascades.") for key in keys):
        return "geekseek"
    if is_promptmr_state_dict(keys):  # before fastMRI's: it has sens_net.* and cascades.* too
        return "promptmr"
    if any(key.startswith("cascades.") for key in keys) and any(key.startswith("sens_net.") for key in keys):
        return "fastmri"
    raise ValueError(
        f"the state dict is neither a fastMRI VarNet, a GeekSeek FlexibleCascadeVarNet nor a PromptMR+ "
        f"(first keys: {keys[:3]})"
    )


def _fastmri_unet_key(rest: str, pools: int) -> str | None:
    """A key inside fastMRI's ``Unet`` -> the same weight in ours (``None`` if unknown)."""
    last = pools - 1
    rules = (
        (r"down_sample_layers\.(\d+)\.layers\.(0|4)\.weight", lambda m: f"down_blocks.{m[1]}.layers.{_CONV_INDEX[m[2]]}.weight"),
        (r"conv\.layers\.(0|4)\.weight", lambda m: f"bottleneck.layers.{_CONV_INDEX[m[1]]}.weight"),
        (r"up_transpose_conv\.(\d+)\.layers\.0\.weight", lambda m: f"up_samplers.{m[1]}.layers.0.weight"),
        (r"up_conv\.(\d+)\.layers\.(0|4)\.weight", lambda m: f"up_blocks.{m[1]}.layers.{_CONV_INDEX[m[2]]}.weight"),
        (rf"up_conv\.{last}\.0\.layers\.(0|4)\.weight", lambda m: f"up_blocks.{last}.layers.{_CONV_INDEX[m[1]]}.weight"),
        (rf"up_conv\.{last}\.1\.(weight|bias)", lambda m: f"head.0.{m[1]}"),
    )
    for pattern, rename in rules:
        if match := re.fullmatch(pattern, rest):
            return rename(match)
    return None


def _feature_unet_key(rest: str, pools: int) -> str | None:
    """A key inside the entry's ``Unet2d`` / ``DLKADeepUnet2d`` (``feature_processor.*``) -> ours."""
    if rest == "final_conv.0.weight":
        return "head.0.weight"
    match = re.fullmatch(r"layer\.((?:child\.)*)(left_block|right_block|upsample)\.(.+)", rest)
    if not match:
        return None
    depth = len(match[1]) // len("child.")
    part, inner = match[2], match[3]
    up_index = pools - 1 - depth
    if part == "upsample":
        return f"up_samplers.{up_index}.{inner}" if inner == "layers.0.weight" else None
    conv = re.fullmatch(r"layers\.(0|4)\.weight", inner)
    if part == "right_block":
        return f"up_blocks.{up_index}.layers.{_CONV_INDEX[conv[1]]}.weight" if conv else None
    block = "bottleneck" if depth == pools else f"down_blocks.{depth}"
    if conv:
        return f"{block}.layers.{_CONV_INDEX[conv[1]]}.weight"
    lska = re.fullmatch(r"(.+)\.(weight|bias)", inner)
    if lska and lska[1] in _LSKA_NAMES:
        return f"{block}.{_LSKA_NAMES[lska[1]]}.{lska[2]}"
    return None


def _skip_last(weight: torch.Tensor) -> torch.Tensor:
    """``Unet2d`` concatenates [skip, up-sampled] before a decoder conv, our U-Net [up-sampled, skip]."""
    skip, upsampled = weight.chunk(2, dim=1)
    return torch.cat([upsampled, skip], dim=1).contiguous()


def _count(keys: list[str], pattern: str) -> int:
    indices = {int(match[1]) for key in keys if (match := re.match(pattern, key))}
    if indices != set(range(len(indices))):
        raise ValueError(f"the state dict's {pattern!r} indices are not 0..N-1: {sorted(indices)}")
    return len(indices)


def _unet_shape(state_dict: Mapping[str, torch.Tensor], prefix: str) -> tuple[int, int]:
    """(chans, pools) of the fastMRI ``Unet`` under ``prefix``."""
    chans = state_dict[f"{prefix}down_sample_layers.0.layers.0.weight"].shape[0]
    pools = _count(list(state_dict), rf"{re.escape(prefix)}down_sample_layers\.(\d+)\.")
    return int(chans), pools


def _lska_k_size(state_dict: Mapping[str, torch.Tensor]) -> int:
    local = dilated = None
    for key, tensor in state_dict.items():
        if key.endswith("spatial_gating_unit.conv0h.weight"):
            local = tensor.shape[-1]
        elif key.endswith("spatial_gating_unit.conv_spatial_h.weight"):
            dilated = tensor.shape[-1]
    for k_size, (local_size, dilated_size, _) in LSKA_KERNELS.items():
        if (local_size, dilated_size) == (local, dilated):
            return k_size
    raise ValueError(f"LSKA kernels {local} and {dilated} match no k_size of {sorted(LSKA_KERNELS)}")


_SKIP = ""  # a key that is checked and dropped (the entry's repeated encoder/decoder and zero buffers)
Rename = Callable[[str, torch.Tensor], "tuple[str | None, torch.Tensor]"]


def _e2e_key(key: str, cascades: str, sens_pools: int, image_pools: int) -> str | None:
    """``sens_net.*`` and ``<cascades>.<i>.{dc_weight, model.unet.*}``, the E2E-VarNet parts of both layouts."""
    if key.startswith("sens_net.norm_unet.unet."):
        inner = _fastmri_unet_key(key.removeprefix("sens_net.norm_unet.unet."), sens_pools)
        return inner and f"sens_net.norm_unet.unet.{inner}"
    if match := re.fullmatch(rf"{cascades}\.(\d+)\.dc_weight", key):
        return f"image_blocks.{match[1]}.dc_weight"
    if match := re.fullmatch(rf"{cascades}\.(\d+)\.model\.unet\.(.+)", key):
        inner = _fastmri_unet_key(match[2], image_pools)
        return inner and f"image_blocks.{match[1]}.norm_unet.unet.{inner}"
    return None


def _fastmri(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, Any], Rename]:
    sens_chans, sens_pools = _unet_shape(state_dict, "sens_net.norm_unet.unet.")
    cascades = _count(list(state_dict), r"cascades\.(\d+)\.")
    chans, pools = _unet_shape(state_dict, "cascades.0.model.unet.") if cascades else (18, 4)
    config = {
        "cascade_counts": [0, 0, cascades],
        "sens_chans": sens_chans,
        "sens_pools": sens_pools,
        "image_chans": chans,
        "image_pools": pools,
        "kspace_mult_factor": 1.0,  # fastMRI's VarNet works on raw k-space
    }
    return config, lambda key, tensor: (_e2e_key(key, "cascades", sens_pools, pools), tensor)


def _geekseek(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, Any], Rename]:
    keys = list(state_dict)
    sens_chans, sens_pools = _unet_shape(state_dict, "sens_net.norm_unet.unet.")
    feature_blocks = _count(keys, r"feat_cascades\.(\d+)\.")
    image_blocks = _count(keys, r"image_cascades\.(\d+)\.")
    lska_flags = [any(k.startswith(f"feat_cascades.{i}.") and ".attn." in k for k in keys) for i in range(feature_blocks)]
    lska_blocks = sum(lska_flags)
    if lska_flags != [True] * lska_blocks + [False] * (feature_blocks - lska_blocks):
        raise ValueError("the LSKA feature cascades are not the first ones (only variant='dlka' is supported)")
    conv_blocks = [i for i in range(feature_blocks) if f"feat_cascades.{i}.output_conv.0.weight" in state_dict]
    if conv_blocks != [i for i in range(feature_blocks) if i % 3 == 0]:
        raise ValueError(f"the image convs sit on feature cascades {conv_blocks}, not on every third one (0, 3, ...)")
    unet_prefix = "feat_cascades.0.feature_processor.layer."
    # the bottleneck is the deepest level: layer.child^pools.left_block
    unet_pools = max((key.count("child.") for key in keys if key.startswith(unet_prefix)), default=0)
    config: dict[str, Any] = {
        "cascade_counts": [lska_blocks, feature_blocks - lska_blocks, image_blocks],
        "sens_chans": sens_chans,
        "sens_pools": sens_pools,
        "kspace_mult_factor": 1e6,
    }
    if feature_blocks:
        config["feature_chans"] = int(state_dict["encoder.encoder.0.weight"].shape[0])
        first = state_dict.get(f"{unet_prefix}left_block.layers.0.weight", state_dict.get(f"{unet_prefix}left_block.conv.weight"))
        config["unet_chans"] = int(first.shape[0])
        config["pools"] = unet_pools
        if lska_blocks:
            config["lska_k_size"] = _lska_k_size(state_dict)
    image_pools = 4
    if image_blocks:
        config["image_chans"], config["image_pools"] = _unet_shape(state_dict, "image_cascades.0.model.unet.")
        image_pools = config["image_pools"]

    def rename(key: str, tensor: torch.Tensor) -> tuple[str | None, torch.Tensor]:
        if new_key := _e2e_key(key, "image_cascades", sens_pools, image_pools):
            return new_key, tensor
        if key in ("encoder.encoder.0.weight", "encoder.encoder.0.bias", "decoder.decoder.weight", "decoder.decoder.bias"):
            part, _, name = key.partition(".")
            return f"{part}.conv.{name.rsplit('.', 1)[1]}", tensor
        if match := re.fullmatch(r"feat_cascades\.(\d+)\.(encoder\.encoder\.0|decoder\.decoder)\.(weight|bias)", key):
            shared = f"{match[2]}.{match[3]}"
            if shared not in state_dict or not torch.equal(state_dict[shared], tensor):
                raise ValueError(f"'{key}' differs from the shared '{shared}' (the encoder/decoder must be shared)")
            return _SKIP, tensor
        if re.fullmatch(r"feat_cascades\.(\d+)\.zero", key):
            if torch.count_nonzero(tensor):
                raise ValueError(f"the buffer '{key}' is not zero")
            return _SKIP, tensor
        if match := re.fullmatch(r"feat_cascades\.(\d+)\.dc_weight", key):
            return f"feature_blocks.{match[1]}.dc_weight", tensor
        if match := re.fullmatch(r"feat_cascades\.(\d+)\.output_conv\.(0|3)\.weight", key):
            return f"feature_blocks.{match[1]}.image_conv.layers.layers.{match[2]}.weight", tensor
        if match := re.fullmatch(r"feat_cascades\.(\d+)\.feature_processor\.(.+)", key):
            inner = _feature_unet_key(match[2], unet_pools)
            if re.fullmatch(r"layer\.(child\.)*right_block\.layers\.0\.weight", match[2]):
                tensor = _skip_last(tensor)
            return inner and f"feature_blocks.{match[1]}.feature_unet.{inner}", tensor
        return None, tensor

    return config, rename


def convert_state_dict(
    state_dict: Mapping[str, Any], layout: str | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A reference state dict -> (this repository's model config, its state dict in our key names).

    The config holds what the weights determine plus :data:`REFERENCE_OPTIONS` (for ``"promptmr"``: plus
    ``_target_``); every other model option keeps its default. Raises ValueError, in one sentence, for a foreign layout, unknown keys or non-tensor values.
    """
    bad = [key for key, value in state_dict.items() if not isinstance(value, torch.Tensor)]
    if bad:
        raise ValueError(f"the state dict holds non-tensor values (first: {bad[0]!r})")
    layout = layout or detect_layout(state_dict)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == "promptmr":
        return convert_promptmr_state_dict(state_dict)
    try:
        config, rename = (_fastmri if layout == "fastmri" else _geekseek)(state_dict)
    except KeyError as err:
        raise ValueError(f"the state dict lacks {err} for a {layout} model") from None
    converted, unknown = {}, []
    for key, tensor in state_dict.items():
        new_key, tensor = rename(key, tensor)
        if new_key is None:
            unknown.append(key)
        elif new_key != _SKIP:
            converted[new_key] = tensor
    if unknown:
        raise ValueError(f"{len(unknown)} key(s) unknown to the {layout} layout: {unknown[:5]}")
    return {**config, **REFERENCE_OPTIONS}, converted
