"""Checkpoints: tensors and plain Python data only, written atomically, loaded with ``weights_only=True``.

A checkpoint is a dict::

    format        "fastmri-featurevarnet/1"
    model         model state_dict                 model_config  plain dict (configs/model/*.yaml keys)
    optimizer     optimizer state_dict             scheduler     scheduler state_dict
    scaler        GradScaler state_dict or None    epoch         epochs completed
    global_step   optimizer steps so far           best_metric / best_epoch / select_best_by
    train_loss_log, val_loss_log, val_ssim_log     lists of [epoch, value]
    rng           utils.training.rng.capture_rng_state()
    config        the whole resolved run config as plain data
    layout        processes, batch size, accumulation   launch   the torchrun launch that wrote it (elastic.py)
    weights       which weights ``model`` holds: "raw" (the optimizer's), "ema" (best_model.pt with an EMA) or
                  "average" (utils.tools.average_checkpoints); absent in older files: raw
    ema           None, or the EMA of the weights: {"decay", "updates", "model": state_dict} (training.ema_decay)
    origin        None, or where the weights came from: an import (import_checkpoint) or an average (average_checkpoints)

Only ``model`` and ``model_config`` are required: imported, per-epoch (``epoch{E}.pt``) and averaged checkpoints
hold little else.

Reconstruction rebuilds the network from ``model_config`` alone, so no model flags are ever needed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from utils.atomic import atomic_path
from utils.errors import UserInputError, file_error
from utils.gates.torch_file import load_torch_file
from utils.model.builder import MODEL_TARGETS, build_model

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint", "model_from_checkpoint", "weights_mismatch"]

CHECKPOINT_FORMAT = "fastmri-featurevarnet/1"

# Model options added when the model was made to compute exactly what the references compute. A checkpoint
# whose model_config predates them was trained with this repository's earlier behaviour, which they name.
LEGACY_MODEL_OPTIONS = {"acs_lines": "contiguous", "feature_padding": "zero_centred", "norm_eps": 1e-6}


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """Write ``checkpoint`` to ``path`` atomically (the previous file survives any interruption)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        torch.save({"format": CHECKPOINT_FORMAT, **checkpoint}, temporary)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint of this repository onto the CPU, safely (:func:`~utils.gates.torch_file.load_torch_file`);
    anything else is a UserInputError naming the file."""
    path = Path(path)
    if not path.exists():
        raise file_error(path, "checkpoint not found")
    checkpoint = load_torch_file(path)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise file_error(path, f"is not a checkpoint of this repository (expected format '{CHECKPOINT_FORMAT}')")
    for key, kinds, expected in (("model", dict, "a state dict"), ("model_config", dict, "a mapping of model options"),
                                 ("config", (dict, type(None)), "the run config or null"), ("origin", (dict, type(None)), "a mapping or null"),
                                 ("ema", (dict, type(None)), "the EMA state or null")):
        if key not in checkpoint and key in ("model", "model_config"):
            raise file_error(path, f"checkpoint has no '{key}' entry")
        if not isinstance(checkpoint.get(key), kinds):
            raise file_error(path, f"checkpoint entry '{key}' is a {type(checkpoint[key]).__name__}, expected {expected}")
    config = checkpoint["model_config"]
    if config.get("_target_", MODEL_TARGETS[0]) in MODEL_TARGETS and "acs_lines" not in config:  # a FeatureVarNet of before
        checkpoint["model_config"] = {**config, **LEGACY_MODEL_OPTIONS}
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> nn.Module:
    """Rebuild the network from the checkpoint's ``model_config`` and load its weights (strictly)."""
    try:
        model = build_model(checkpoint["model_config"])
    except UserInputError as err:  # name the checkpoint, not just the config key
        raise file_error(path, f"stores a model config that cannot be built: {err}") from None
    mismatch = weights_mismatch(model.state_dict(), checkpoint["model"])
    if mismatch:
        raise file_error(path, f"weights do not fit the model config stored with them: {mismatch}")
    try:
        model.load_state_dict(checkpoint["model"], strict=True)
    except RuntimeError as err:
        first_line = str(err).strip().splitlines()[0]
        raise file_error(path, f"weights do not fit the model config stored with them ({first_line})") from None
    return model


def weights_mismatch(expected: dict[str, torch.Tensor], weights: Any) -> str:
    """How ``weights`` differ from the built model's state dict, in one phrase ('' if they fit)."""
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        return "'model' is not a state dict of tensors"
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights if key not in expected]
    reshaped = [key for key in expected if key in weights and weights[key].shape != expected[key].shape]
    parts = []
    if reshaped:
        key = reshaped[0]
        parts.append(
            f"{len(reshaped)} tensor(s) of another shape (first: {key} {tuple(weights[key].shape)}, "
            f"the config builds {tuple(expected[key].shape)})"
        )
    if missing:
        parts.append(f"{len(missing)} missing (first: {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
    return "; ".join(parts)
