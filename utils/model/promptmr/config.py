"""The builder's checks of a PromptMR+ model config: one sentence per bad value, before any tensor is built."""
from __future__ import annotations

import inspect
from typing import Any, Mapping

from utils.errors import UserInputError
from utils.model.promptmr.promptmr_plus import PromptMRPlus

__all__ = ["PROMPTMR_ARGUMENTS", "check_promptmr_config"]

PROMPTMR_ARGUMENTS = tuple(inspect.signature(PromptMRPlus.__init__).parameters)[1:]

_LEVEL_LISTS = {  # per-level lists (full resolution first) and the smallest value each entry may take
    "feature_dim": 1, "prompt_dim": 1, "sens_feature_dim": 1, "sens_prompt_dim": 1, "len_prompt": 1,
    "prompt_size": 1, "n_enc_cab": 1, "n_dec_cab": 0, "n_skip_cab": 0,
}
_INTS = {  # integers and their smallest value
    "num_cascades": 0, "n_feat0": 1, "sens_n_feat0": 1, "n_bottleneck_cab": 0, "ca_reduction": 1,
    "n_history": 0, "sens_coil_chunk": 0,
}
_BOOLS = ("use_ca", "learnable_prompt", "adaptive_input", "checkpointing")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_types(cfg: Mapping[str, Any]) -> None:
    for key, least in _LEVEL_LISTS.items():
        value = cfg.get(key, [least] * 3)
        if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(_is_int(v) and v >= least for v in value):
            kind = "positive integers" if least else "integers >= 0"
            raise UserInputError(f"model.{key} must be a list of 3 {kind} (one per U-Net level), got {value!r}.")
    for key, least in _INTS.items():
        if key in cfg and not (_is_int(cfg[key]) and cfg[key] >= least):
            kind = "a positive integer" if least else "an integer >= 0"
            raise UserInputError(f"model.{key} must be {kind}, got {cfg[key]!r}.")
    for key in _BOOLS:
        if key in cfg and not isinstance(cfg[key], bool):
            raise UserInputError(f"model.{key} must be true or false, got {cfg[key]!r}.")


def check_promptmr_config(cfg: Mapping[str, Any]) -> None:
    """Raise a one-sentence UserInputError for the first bad value of a plain-dict PromptMR+ config."""
    unknown = sorted(set(cfg) - set(PROMPTMR_ARGUMENTS))
    if unknown:
        hint = " (only num_adj_slices = 1 exists: one slice in)" if "num_adj_slices" in unknown else ""
        raise UserInputError(
            f"PromptMR+ model config has unknown key(s) {unknown}{hint}; allowed keys are {list(PROMPTMR_ARGUMENTS)}."
        )
    _check_types(cfg)
    n_buffer = cfg.get("n_buffer", 4)
    if not (_is_int(n_buffer) and (n_buffer == 0 or n_buffer >= 3)):
        raise UserInputError(
            f"model.n_buffer must be 0 or an integer >= 3 ([ffx, latent, img_zf, ...]), got {n_buffer!r}."
        )
    if cfg.get("adaptive_input") is False and n_buffer:
        raise UserInputError(
            f"model.n_buffer must be 0 when adaptive_input is false (the U-Net sees the image alone), got {n_buffer!r}."
        )
    widths = [cfg.get(key, default) for key, default in (("n_feat0", 48), ("sens_n_feat0", 24))]
    widths += [*cfg.get("feature_dim", (72, 96, 120)), *cfg.get("sens_feature_dim", (36, 48, 60))]
    reduction = cfg.get("ca_reduction", 16)
    if cfg.get("use_ca", True) and reduction > min(widths):
        raise UserInputError(
            f"model.ca_reduction must be at most the narrowest CAB width ({min(widths)}; channel attention "
            f"squeezes C channels to C // ca_reduction), got {reduction!r}."
        )
