"""The one way to turn a model config into a network, shared by training, reconstruction and the tools.

A model config is a ``configs/model/*.yaml`` group option (or the same keys in a dict): ``_target_`` names
the network, :class:`~utils.model.feature_varnet.FeatureVarNet` (the default when it is absent) or
:class:`~utils.model.promptmr.PromptMRPlus`, and every other key is one of its arguments. Bad values are
reported as a one-sentence :class:`~utils.errors.UserInputError` before any tensor is built.
"""
from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from utils.errors import UserInputError, file_error
from utils.model.feature_varnet import FeatureVarNet
from utils.model.lska import LSKA_GATES, LSKA_KERNELS
from utils.model.promptmr import PromptMRPlus
from utils.model.promptmr.config import check_promptmr_config
from utils.model.unet import PADDINGS
from utils.mri.acs import ACS_MODES

__all__ = [
    "MODEL_CONFIG_DIR",
    "MODEL_TARGETS",
    "PROMPTMR_TARGETS",
    "build_model",
    "model_class",
    "model_defaults",
    "load_model_config",
    "model_config_names",
]

MODEL_CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "model"
MODEL_TARGETS = ("utils.model.FeatureVarNet", "utils.model.feature_varnet.FeatureVarNet")
PROMPTMR_TARGETS = ("utils.model.PromptMRPlus", "utils.model.promptmr.PromptMRPlus")

_POSITIVE_INTS = ("feature_chans", "unet_chans", "pools", "sens_chans", "sens_pools", "image_chans", "image_pools")
_ARGUMENTS = tuple(inspect.signature(FeatureVarNet.__init__).parameters)[1:]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_cascade_counts(counts: Any) -> None:
    if (
        not isinstance(counts, (list, tuple))
        or len(counts) != 3
        or not all(_is_int(count) and count >= 0 for count in counts)
    ):
        raise UserInputError(
            f"model.cascade_counts must be a list of 3 non-negative integers [lska_blocks, feature_blocks, "
            f"image_blocks], got {counts!r}."
        )


def _check_values(cfg: Mapping[str, Any]) -> None:
    """Raise a one-sentence UserInputError for the first bad value of a plain-dict model config."""
    unknown = sorted(set(cfg) - set(_ARGUMENTS))
    if unknown:
        raise UserInputError(f"model config has unknown key(s) {unknown}; allowed keys are {list(_ARGUMENTS)}.")
    if "cascade_counts" in cfg:
        _check_cascade_counts(cfg["cascade_counts"])
    for key in _POSITIVE_INTS:
        if key in cfg and not (_is_int(cfg[key]) and cfg[key] > 0):
            raise UserInputError(f"model.{key} must be a positive integer, got {cfg[key]!r}.")
    if "lska_k_size" in cfg and (not _is_int(cfg["lska_k_size"]) or cfg["lska_k_size"] not in LSKA_KERNELS):
        raise UserInputError(f"model.lska_k_size must be one of {sorted(LSKA_KERNELS)}, got {cfg['lska_k_size']!r}.")
    for key, choices in (("acs_lines", ACS_MODES), ("feature_padding", PADDINGS), ("lska_gate", LSKA_GATES)):
        if key in cfg and cfg[key] not in choices:
            raise UserInputError(f"model.{key} must be one of {list(choices)}, got {cfg[key]!r}.")
    chunk = cfg.get("sens_coil_chunk", 0)
    if not (_is_int(chunk) and chunk >= 0):
        raise UserInputError(f"model.sens_coil_chunk must be an integer >= 0 (0: all coils at once), got {chunk!r}.")
    norm_eps = cfg.get("norm_eps", 0.0)
    if isinstance(norm_eps, bool) or not isinstance(norm_eps, (int, float)) or not 0 <= norm_eps < math.inf:
        raise UserInputError(f"model.norm_eps must be a number >= 0 (0: the references' statistics), got {norm_eps!r}.")
    factor = cfg.get("kspace_mult_factor", 1.0)
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor <= 0:
        raise UserInputError(f"model.kspace_mult_factor must be a positive finite number, got {factor!r}.")
    for key in ("checkpointing", "identity_init"):
        if key in cfg and not isinstance(cfg[key], bool):
            raise UserInputError(f"model.{key} must be true or false, got {cfg[key]!r}.")
    if cfg.get("identity_init") and sum(cfg.get("cascade_counts", (1,))[:2]) and cfg.get("feature_chans", 2) < 2:
        raise UserInputError(
            f"model.identity_init needs feature_chans >= 2 (the encoder/decoder identity pair), got "
            f"{cfg['feature_chans']!r}."
        )


def _to_plain_dict(model_cfg: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    if isinstance(model_cfg, DictConfig):
        try:
            return OmegaConf.to_container(model_cfg, resolve=True)  # type: ignore[return-value]
        except OmegaConfBaseException as err:
            raise UserInputError(f"model config cannot be resolved: {err}.") from None
    if not isinstance(model_cfg, Mapping):
        raise UserInputError(f"model config must be a mapping of keys to values, got {type(model_cfg).__name__}.")
    return {key: list(value) if isinstance(value, ListConfig) else value for key, value in model_cfg.items()}


def model_class(model_cfg: Mapping[str, Any] | DictConfig) -> type[nn.Module]:
    """The network class a model config builds (by its ``_target_``; FeatureVarNet without one)."""
    target = _to_plain_dict(model_cfg).get("_target_", MODEL_TARGETS[0])
    if target in PROMPTMR_TARGETS:
        return PromptMRPlus
    if target in MODEL_TARGETS:
        return FeatureVarNet
    raise UserInputError(f"model._target_ must be {MODEL_TARGETS[0]} or {PROMPTMR_TARGETS[0]}, got {target!r}.")


def model_defaults(model_cfg: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    """The constructor defaults of the network a model config builds (what an absent key means)."""
    parameters = inspect.signature(model_class(model_cfg).__init__).parameters.items()
    return {name: parameter.default for name, parameter in parameters if parameter.default is not inspect.Parameter.empty}


def build_model(model_cfg: Mapping[str, Any] | DictConfig) -> nn.Module:
    """Validated network from a model config (DictConfig or dict; without ``_target_``: a ``FeatureVarNet``)."""
    cfg = _to_plain_dict(model_cfg)
    target = cfg.pop("_target_", MODEL_TARGETS[0])
    if target in PROMPTMR_TARGETS:
        check_promptmr_config(cfg)
        return PromptMRPlus(**cfg)
    if target not in MODEL_TARGETS:
        raise UserInputError(f"model._target_ must be {MODEL_TARGETS[0]} or {PROMPTMR_TARGETS[0]}, got {target!r}.")
    _check_values(cfg)
    return FeatureVarNet(**cfg)


def model_config_names() -> list[str]:
    """Names of the model configs shipped in ``configs/model``."""
    return sorted(path.stem for path in MODEL_CONFIG_DIR.glob("*.yaml"))


def load_model_config(name_or_path: str, overrides: Sequence[str] = ()) -> DictConfig:
    """``configs/model/<name>.yaml`` (or a YAML path) merged with ``key=value`` overrides."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = MODEL_CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise file_error(path, f"no such model config; choose one of {model_config_names()} or give a YAML path.")
    try:
        cfg = OmegaConf.load(path)
        dotlist = [override.removeprefix("model.") for override in overrides]
        merged = OmegaConf.merge(cfg, OmegaConf.from_dotlist(dotlist))
    except (OmegaConfBaseException, ValueError) as err:
        raise file_error(path, f"cannot be read with overrides {list(overrides)}: {err}.") from None
    if not isinstance(merged, DictConfig):
        raise file_error(path, "does not hold a mapping of model arguments.")
    return merged
