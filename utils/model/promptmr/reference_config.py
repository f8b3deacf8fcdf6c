"""The sizes of the entry's PromptMR+ from the shapes in its state dict (see :mod:`.reference_keys`).

Every constructor argument of :class:`~utils.model.promptmr.PromptMRPlus` that changes a tensor's shape is
read back from one: widths from the convolutions, prompt sizes from ``prompt_param`` (1, len, dim, size, size),
CAB counts by counting, ``n_history`` from the momentum convolution's input width (``(n_history + 1) * C``),
``n_buffer`` from the first convolution's (``2 * (1 + n_buffer)``), the channel-attention reduction from the
squeeze convolutions (``C // reduction``). The entry's sensitivity net shares the cascades' prompt lengths,
prompt sizes and CAB counts; so does ours, and a state dict where they differ is refused.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import torch

__all__ = ["infer_promptmr_config"]

_SENS = "sens_net.norm_unet.unet."
_CASCADE = "cascades.0.model.unet."
_PREFERRED_REDUCTIONS = (2, 16)  # the entry's and the paper's; any reduction giving the same shapes builds the same net


def _count(keys: list[str], pattern: str) -> int:
    return len({match[1] for key in keys if (match := re.fullmatch(pattern, key))})


def _unet_sizes(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, Any]:
    """Widths, prompt shapes and CAB counts of the entry's PromptUnet under ``prefix``."""
    keys = list(state_dict)
    prompts = [state_dict[f"{prefix}prompt_level{level}.prompt_param"].shape for level in (1, 2, 3)]
    cab = r"\.(\d+)\.body\.0\.weight"
    return {
        "n_feat0": int(state_dict[f"{prefix}feat_extract.weight"].shape[0]),
        "feature_dim": [int(state_dict[f"{prefix}enc_level{level}.down.weight"].shape[0]) for level in (1, 2, 3)],
        "prompt_dim": [int(shape[2]) for shape in prompts],
        "len_prompt": [int(shape[1]) for shape in prompts],
        "prompt_size": [int(shape[3]) for shape in prompts],
        "n_enc_cab": [_count(keys, rf"{re.escape(prefix)}enc_level{level}\.encoder{cab}") for level in (1, 2, 3)],
        "n_dec_cab": [_count(keys, rf"{re.escape(prefix)}dec_level{level}\.fuse{cab}") for level in (1, 2, 3)],
        "n_skip_cab": [_count(keys, rf"{re.escape(prefix)}skip_attn{level}\.skip_attn{cab}") for level in (1, 2, 3)],
        "n_bottleneck_cab": _count(keys, rf"{re.escape(prefix)}bottleneck{cab}"),
    }


def _ca_reduction(state_dict: Mapping[str, torch.Tensor]) -> int:
    """A reduction ``r`` with ``C // r`` = every squeeze convolution's width (2 or 16 where either fits)."""
    shapes = {(int(t.shape[1]), int(t.shape[0])) for k, t in state_dict.items() if k.endswith("CA.conv_du.0.weight")}
    if not shapes:
        return _PREFERRED_REDUCTIONS[0]  # no channel attention: the reduction is unused
    fitting = [r for r in range(1, max(c for c, _ in shapes) + 1) if all(c // r == s for c, s in shapes)]
    if not fitting:
        raise ValueError(f"the channel-attention widths {sorted(shapes)} fit no single reduction")
    preferred = [r for r in _PREFERRED_REDUCTIONS if r in fitting]
    return preferred[0] if preferred else fitting[0]


def infer_promptmr_config(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The :class:`PromptMRPlus` config (with ``_target_``) that builds the shapes of ``state_dict``."""
    try:
        sens, main = _unet_sizes(state_dict, _SENS), _unet_sizes(state_dict, _CASCADE)
        sens_in = int(state_dict[f"{_SENS}feat_extract.weight"].shape[1])
        cascade_in = int(state_dict[f"{_CASCADE}feat_extract.weight"].shape[1])
        momentum = state_dict.get(f"{_CASCADE}dec_level3.momentum.0.weight")
    except KeyError as err:
        raise ValueError(f"the state dict lacks {err} for a PromptMR+ model") from None
    if sens_in != 2:
        raise ValueError(f"the sensitivity net takes {sens_in} channels, not 2: only num_adj_slices = 1 is supported")
    shared = ("len_prompt", "prompt_size", "n_enc_cab", "n_dec_cab", "n_skip_cab", "n_bottleneck_cab")
    differing = [name for name in shared if sens[name] != main[name]]
    if differing:
        raise ValueError(f"the sensitivity net's {differing} differ from the cascades' (they must be shared)")
    n_buffer = cascade_in // 2 - 1
    n_history = 0 if momentum is None else int(momentum.shape[1]) // int(momentum.shape[0]) - 1
    return {
        "_target_": "utils.model.PromptMRPlus",
        "num_cascades": _count(list(state_dict), r"cascades\.(\d+)\.dc_weight"),
        **main,
        "sens_n_feat0": sens["n_feat0"],
        "sens_feature_dim": sens["feature_dim"],
        "sens_prompt_dim": sens["prompt_dim"],
        "ca_reduction": _ca_reduction(state_dict),
        "use_ca": any(".CA." in key for key in state_dict),
        "adaptive_input": n_buffer > 0,
        "n_buffer": n_buffer,
        "n_history": n_history,
    }
