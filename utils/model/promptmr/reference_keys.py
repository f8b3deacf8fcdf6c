"""The 2025 entry's PromptMR+ state dict -> a :class:`~utils.model.promptmr.PromptMRPlus` config and our keys.

The entry's ``PromptMR`` (``sMartify-fastmri/2025_final``, ``utils/model/promptmr_plus.py``) saves
``sens_net.norm_unet.unet.*``, ``cascades.<i>.dc_weight`` and ``cascades.<i>.model.unet.*``, plus:

- ``ReentrantWrapper`` keys: one ``_dummy_tensor`` (ones, unused by the maths) per wrapper, and the wrapped
  module nested as ``module.module`` (each decoder's up-sampling conv is ``up.module.module.1.weight``);
- the whole sensitivity net a second time, under ``sens_net_ckp.module.module.`` (the same tensors);
- the shared PReLU's slope under every CAB that uses it (``<cab>.body.1.weight``).

The dummies must be ones and the copies must equal their originals; both are dropped, and the shared slope
becomes our one ``shared_prelu.weight``. The architecture is read from the tensor shapes; whether the prompts
were learnable is not stored (``learnable_prompt`` keeps its default, False, the entry's).
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping

import torch

from utils.model.promptmr.reference_config import infer_promptmr_config

__all__ = ["is_promptmr_state_dict", "convert_promptmr_state_dict"]

_SENS = "sens_net.norm_unet.unet."
_SENS_COPY = "sens_net_ckp.module.module."
_SHARED_PRELU = "shared_prelu.weight"
_FIRST_CAB = "encoders.0.cabs.0"  # the one CAB per U-Net with a PReLU of its own
_CAB_PARTS = {"body.0.weight": "conv1.weight", "body.2.weight": "conv2.weight",
              "CA.conv_du.0.weight": "attention.squeeze.weight", "CA.conv_du.2.weight": "attention.excite.weight"}
_DUMMY = re.compile(
    r"sens_net_ckp\._dummy_tensor|(sens_net\.norm_unet|cascades\.\d+\.model)\.unet\.dec_level\d\.up\._dummy_tensor"
)


def is_promptmr_state_dict(keys: list[str]) -> bool:
    """Whether the key names are those of the entry's PromptMR."""
    return any(key.startswith(_SENS + "feat_extract.") for key in keys)


def _level(entry_level: str) -> int:
    """The entry counts levels 1..3, we count 0..2."""
    return int(entry_level) - 1


def _cab(rest: str, head: str) -> str | None:
    """A key inside one of the entry's CABs -> ours below ``head`` (the shared PReLU -> ``_SHARED_PRELU``)."""
    if rest == "body.1.weight":
        return f"{head}.act.weight" if head == _FIRST_CAB else _SHARED_PRELU
    return f"{head}.{_CAB_PARTS[rest]}" if rest in _CAB_PARTS else None


_UNET_RULES: tuple[tuple[str, Callable[[re.Match], str | None]], ...] = (
    (r"feat_extract\.weight", lambda m: "input_conv.weight"),
    (r"conv_last\.weight", lambda m: "output_conv.weight"),
    (r"enc_level(\d)\.encoder\.(\d+)\.(.+)", lambda m: _cab(m[3], f"encoders.{_level(m[1])}.cabs.{m[2]}")),
    (r"enc_level(\d)\.down\.(weight|bias)", lambda m: f"encoders.{_level(m[1])}.down.{m[2]}"),
    (r"skip_attn(\d)\.skip_attn\.(\d+)\.(.+)", lambda m: _cab(m[3], f"skips.{_level(m[1])}.{m[2]}")),
    (r"bottleneck\.(\d+)\.(.+)", lambda m: _cab(m[2], f"bottleneck.{m[1]}")),
    (r"prompt_level(\d)\.prompt_param", lambda m: f"prompts.{_level(m[1])}.components"),
    (r"prompt_level(\d)\.linear_layer\.(weight|bias)", lambda m: f"prompts.{_level(m[1])}.selector.{m[2]}"),
    (r"prompt_level(\d)\.dec_conv3x3\.weight", lambda m: f"prompts.{_level(m[1])}.conv.weight"),
    (r"dec_level(\d)\.momentum\.0\.weight", lambda m: f"decoders.{_level(m[1])}.momentum_conv.weight"),
    (r"dec_level(\d)\.momentum\.1\.(.+)", lambda m: _cab(m[2], f"decoders.{_level(m[1])}.momentum_cab")),
    (r"dec_level(\d)\.fuse\.(\d+)\.(.+)", lambda m: _cab(m[3], f"decoders.{_level(m[1])}.fuse.{m[2]}")),
    (r"dec_level(\d)\.reduce\.weight", lambda m: f"decoders.{_level(m[1])}.reduce.weight"),
    (r"dec_level(\d)\.up\.module\.module\.1\.weight", lambda m: f"decoders.{_level(m[1])}.up_conv.weight"),
    (r"dec_level(\d)\.ca\.(.+)", lambda m: _cab(m[2], f"decoders.{_level(m[1])}.out_cab")),
)


def _unet_key(rest: str) -> str | None:
    """A key inside the entry's ``PromptUnet`` -> ours inside :class:`PromptUnet` (None: unknown)."""
    for pattern, rename in _UNET_RULES:
        if match := re.fullmatch(pattern, rest):
            return rename(match)
    return None


def _rename(key: str) -> tuple[str | None, str]:
    """(our key or None, the prefix it goes under); the shared PReLU goes under no prefix."""
    if key.startswith(_SENS):
        return _unet_key(key.removeprefix(_SENS)), _SENS
    if re.fullmatch(r"cascades\.\d+\.dc_weight", key):
        return key, ""
    if match := re.fullmatch(r"cascades\.(\d+)\.model\.unet\.(.+)", key):
        return _unet_key(match[2]), f"cascades.{match[1]}.norm_unet.unet."
    return None, ""


def _check_dropped(key: str, tensor: torch.Tensor, state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True for a wrapper dummy or a sensitivity-net copy (checked, then dropped); ValueError for a bad one."""
    if _DUMMY.fullmatch(key):
        if not torch.equal(tensor, torch.ones_like(tensor)):
            raise ValueError(f"the wrapper's '{key}' is not ones")
        return True
    if key.startswith(_SENS_COPY):
        original = "sens_net." + key.removeprefix(_SENS_COPY)
        if original not in state_dict or not torch.equal(state_dict[original], tensor):
            raise ValueError(f"'{key}' differs from '{original}' (the sensitivity net must be the same module)")
        return True
    return False


def convert_promptmr_state_dict(
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The entry's state dict -> (our model config with ``_target_``, the state dict in our key names).

    ValueError, in one sentence, for unknown keys, unequal copies or a shape this package cannot build.
    """
    config = infer_promptmr_config(state_dict)
    converted: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in state_dict.items():
        if _check_dropped(key, tensor, state_dict):
            continue
        inner, prefix = _rename(key)
        if inner is None:
            unknown.append(key)
        elif inner == _SHARED_PRELU:
            if _SHARED_PRELU in converted and not torch.equal(converted[_SHARED_PRELU], tensor):
                raise ValueError(f"'{key}' differs from the other shared PReLU slopes (one PReLU is shared)")
            converted[_SHARED_PRELU] = tensor
        else:
            converted[prefix + inner] = tensor[0] if inner.endswith(".components") else tensor
    if unknown:
        raise ValueError(f"{len(unknown)} key(s) unknown to the promptmr layout: {unknown[:5]}")
    return config, converted
