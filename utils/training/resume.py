"""Where a run starts: fresh weights, the weights of ``training.init_from``, or exactly where ``model.pt`` stopped.

A run folder that already holds a run is never overwritten silently: continuing it needs ``training.resume=true``
(or a torchrun restart of the same launch, :mod:`utils.training.elastic`), starting over needs
``training.overwrite=true``. A resume restores the model, optimizer, scheduler, GradScaler, augmentation and EMA
states, every rank's RNG state and the :class:`~utils.training.loop.TrainState`, and refuses a checkpoint of
another model config or another process/batch/accumulation layout. The EMA (``training.ema_decay``) starts as a
copy of the starting weights (those of ``init_from`` included).
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
from utils.training.weight_average import WeightEMA

__all__ = ["same_model_config", "start_state"]

log = logging.getLogger("train")


def same_model_config(saved: dict, current: dict) -> bool:
    """Equal model configs, counting keys a checkpoint predates (e.g. identity_init) at their defaults."""
    def normalise(config: dict) -> dict:
        defaults = model_defaults(config)
        return {**defaults, **{key: list(value) if isinstance(value, tuple) else value for key, value in config.items()}}

    try:
        return normalise(saved) == normalise(current)
    except UserInputError:  # a saved config of an unknown network is not this run's
        return False


def _fresh_state(cfg: DictConfig, model: torch.nn.Module, ema: WeightEMA | None = None) -> TrainState:
    """A new run: random weights, or those of ``training.init_from`` (model only; the optimizer starts fresh).
    The EMA starts from those weights."""
    state = _initial_weights(cfg, model)
    if ema is not None:
        ema.reset(model)
    return state


def _initial_weights(cfg: DictConfig, model: torch.nn.Module) -> TrainState:
    """Load ``training.init_from`` into ``model`` if set; the fresh state records where the weights came from."""
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


def _restore_ema(ema: WeightEMA | None, checkpoint: dict, model: torch.nn.Module, path: Path) -> None:
    """The EMA of a resumed run: exactly as saved; from the resumed weights if the run had none."""
    saved = checkpoint.get("ema")
    if ema is None:
        if saved:
            log.warning("%s holds an EMA of the weights; training.ema_decay=0 continues without it", path)
        return
    if not saved:
        log.warning("%s holds no EMA (its run had training.ema_decay=0): the EMA starts from the resumed weights", path)
        ema.reset(model)
        return
    mismatch = weights_mismatch(ema.module.state_dict(), saved.get("model"))
    if mismatch:
        raise file_error(path, f"EMA weights do not fit this run's model: {mismatch}")
    if saved.get("decay") != ema.decay:
        log.warning("%s: the EMA was kept with decay %s, it continues with training.ema_decay=%s", path, saved.get("decay"), ema.decay)
    ema.load_state_dict(saved)


def start_state(cfg: DictConfig, checkpoint_dir: Path, model, optimizer, scheduler, scaler, transform, dist: Distributed,
                ema: WeightEMA | None = None) -> TrainState:
    """A fresh state, or the one in ``model.pt`` with ``training.resume`` or after a torchrun restart of this
    launch (:mod:`utils.training.elastic`); never silently over an old run. ``ema`` is started or restored."""
    last = checkpoint_dir / "model.pt"
    if not (resume_after_restart(last, dist) or cfg.training.resume):
        if last.exists() and not cfg.training.overwrite:
            raise UserInputError(
                f"{checkpoint_dir.parent}: already holds a run; continue it with training.resume=true, "
                "pick another exp_name=, or start over with training.overwrite=true"
            )
        return _fresh_state(cfg, model, ema)
    if not last.exists():
        log.warning("training.resume=true but %s does not exist: starting from scratch", last)
        return _fresh_state(cfg, model, ema)
    checkpoint = load_checkpoint(last)
    if not same_model_config(checkpoint["model_config"], OmegaConf.to_container(cfg.model, resolve=True)):
        raise file_error(last, "was trained with another model config; resume with the same model= settings")
    saved_layout = checkpoint.get("layout", {"world_size": 1, "batch_size": cfg.data.batch_size, "grad_accumulation": cfg.training.grad_accumulation})
    if saved_layout != run_layout(cfg, dist):
        raise file_error(last, f"was written by a run with {saved_layout}, this one has {run_layout(cfg, dist)}; resume with the "
                               "same number of processes, data.batch_size and training.grad_accumulation (its position in the "
                               "epoch and its lr schedule depend on them)")
    model.load_state_dict(checkpoint["model"])
    _restore_ema(ema, checkpoint, model, last)
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
