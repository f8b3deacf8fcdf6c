"""Where a run starts: fresh weights, the weights of ``training.init_from``, or exactly where ``model.pt`` stopped.

A run folder that already holds a run is never overwritten silently: continuing it needs ``training.resume=true``
(or a torchrun restart of the same launch, :mod:`utils.training.elastic`), starting over needs
``training.overwrite=true``. A resume restores the model, optimizer, scheduler, GradScaler and augmentation
states, every rank's RNG state and the :class:`~utils.training.loop.TrainState`, and refuses a checkpoint of
another model config or another process/batch/accumulation layout.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from utils.distributed import Distributed
from utils.errors import UserInputError, file_error
from utils.model.checkpoint import load_checkpoint, weights_mismatch
from utils.model.builder import model_defaults
from utils.training.checkpointer import run_layout
from utils.training.elastic import resume_after_restart
from utils.training.loop import TrainState
from utils.training.rng import restore_rng_state

__all__ = ["start_state"]

log = logging.getLogger("train")


def _same_model_config(saved: dict, current: dict) -> bool:
    """Equal model configs, counting keys a checkpoint predates (e.g. identity_init) at their defaults."""
    def normalise(config: dict) -> dict:
        defaults = model_defaults(config)
        return {**defaults, **{key: list(value) if isinstance(value, tuple) else value for key, value in config.items()}}

    try:
        return normalise(saved) == normalise(current)
    except UserInputError:  # a saved config of an unknown network is not this run's
        return False


def _fresh_state(cfg: DictConfig, model: torch.nn.Module) -> TrainState:
    """A new run: random weights, or those of ``training.init_from`` (model only; the optimizer starts fresh)."""
    path = cfg.training.get("init_from")
    if not path:
        return TrainState()
    checkpoint = load_checkpoint(path)
    mismatch = weights_mismatch(model.state_dict(), checkpoint["model"])
    if mismatch:
        raise file_error(path, f"weights do not fit this run's model config (training.init_from): {mismatch}; "
                               f"its own config is {checkpoint['model_config']}")
    model.load_state_dict(checkpoint["model"])
    record = {"path": str(Path(path).resolve()), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
              "origin": checkpoint.get("origin")}
    log.info("initialised the model from %s (origin: %s); the optimizer starts fresh", path, record["origin"] or "this repository")
    return TrainState(init_from=record)


def start_state(cfg: DictConfig, checkpoint_dir: Path, model, optimizer, scheduler, scaler, transform, dist: Distributed) -> TrainState:
    """A fresh state, or the one in ``model.pt`` with ``training.resume`` or after a torchrun restart of this
    launch (:mod:`utils.training.elastic`); never silently over an old run."""
    last = checkpoint_dir / "model.pt"
    if not (resume_after_restart(last, dist) or cfg.training.resume):
        if last.exists() and not cfg.training.overwrite:
            raise UserInputError(
                f"{checkpoint_dir.parent}: already holds a run; continue it with training.resume=true, "
                "pick another exp_name=, or start over with training.overwrite=true"
            )
        return _fresh_state(cfg, model)
    if not last.exists():
        log.warning("training.resume=true but %s does not exist: starting from scratch", last)
        return _fresh_state(cfg, model)
    checkpoint = load_checkpoint(last)
    if not _same_model_config(checkpoint["model_config"], OmegaConf.to_container(cfg.model, resolve=True)):
        raise file_error(last, "was trained with another model config; resume with the same model= settings")
    saved_layout = checkpoint.get("layout", {"world_size": 1, "batch_size": cfg.data.batch_size, "grad_accumulation": cfg.training.grad_accumulation})
    if saved_layout != run_layout(cfg, dist):
        raise file_error(last, f"was written by a run with {saved_layout}, this one has {run_layout(cfg, dist)}; resume with the "
                               "same number of processes, data.batch_size and training.grad_accumulation (its position in the "
                               "epoch and its lr schedule depend on them)")
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    if scaler.is_enabled() and checkpoint.get("scaler"):
        scaler.load_state_dict(checkpoint["scaler"])
    if hasattr(transform, "load_state_dict") and checkpoint.get("augment"):
        transform.load_state_dict(checkpoint["augment"])
    per_rank = checkpoint.get("rng_per_rank") or [checkpoint["rng"]]
    if len(per_rank) != dist.world_size:
        log.warning("%s was written by %d process(es), this run has %d: every rank restores rank 0's RNG state",
                    last, len(per_rank), dist.world_size)
    restore_rng_state(per_rank[dist.rank] if len(per_rank) == dist.world_size else per_rank[0])
    fields = {key: checkpoint[key] for key in TrainState.__dataclass_fields__ if key in checkpoint}
    fields["step_loss_log"] = fields["step_loss_log"].tolist()
    state = TrainState(**fields)
    log.info("resumed %s at epoch %d, batch %d (step %d)", last, state.epoch, state.batches_done, state.global_step)
    return state
