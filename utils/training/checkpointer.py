"""The run's saves: what a training checkpoint holds, when it is written, and which epoch is the best.

- every epoch: ``checkpoints/model.pt`` (resume from here) and, when the epoch improved the selection metric
  (``training.select_best_by``), ``checkpoints/best_model.pt``; with ``training.keep_epoch_weights: N`` also
  ``checkpoints/epoch{E}.pt`` (weights only) for the last N epochs (:mod:`~utils.training.epoch_weights`);
- every ``training.checkpoint_every_steps`` optimizer steps and every ``training.checkpoint_every_minutes``
  minutes of wall time: ``model.pt`` again (:class:`~utils.training.checkpoint_policy.CheckpointTimer`);
- on a stop signal: ``model.pt``, resumable mid-epoch.

With ``training.ema_decay`` the exponential moving average of the weights (:class:`WeightEMA`) is saved under
``ema`` in every checkpoint, and ``best_model.pt``'s ``model`` holds the EMA weights (the ones validated), while
``model.pt``'s holds the raw weights the optimizer continues from; ``weights`` says which (``raw`` or ``ema``).
Every save also rewrites the ``.npy`` loss logs. Only rank 0 writes (through :meth:`Distributed.on_main`, so a
failed write stops every rank with the same line); every rank takes part, since the RNG states of all ranks go
into the checkpoint. A save is skipped, with one warning, when the disk lacks room for it
(:class:`~utils.training.checkpoint_policy.DiskSpaceGuard`). The file format is :mod:`utils.model.checkpoint`.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from utils.distributed import Distributed
from utils.errors import file_error
from utils.training.checkpoint_policy import CheckpointTimer, DiskSpaceGuard, write_checkpoints
from utils.training.elastic import launch_id
from utils.training.epoch_weights import write_epoch_weights
from utils.training.logger import write_history
from utils.training.loop import TrainState
from utils.training.rng import capture_rng_state

__all__ = ["Checkpointer", "run_layout", "improved"]

log = logging.getLogger("train")
LOGS = {"train_loss_log.npy": "train_loss_log", "val_loss_log.npy": "val_loss_log", "val_ssim_log.npy": "val_ssim_log",
        "val_total_2026_log.npy": "val_total_2026_log", "train_step_loss_log.npy": "step_loss_log"}


def run_layout(cfg: DictConfig, dist: Distributed) -> dict[str, int]:
    """What fixes the batches of an epoch and the optimizer steps: a resume must keep it."""
    return {"world_size": dist.world_size, "batch_size": cfg.data.batch_size, "grad_accumulation": cfg.training.grad_accumulation}


def improved(value: float | None, best: float | None, select_best_by: str) -> bool:
    """Whether ``value`` of the selection metric beats ``best`` (higher SSIM, or lower training loss)."""
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if select_best_by.startswith("val_") else value < best


class Checkpointer:
    """Writes the checkpoints of one run (see the module docstring); every rank calls every method."""

    def __init__(self, cfg: DictConfig, dist: Distributed, device: torch.device, run_dir: Path, state: TrainState,
                 modules: dict[str, Any]):
        """``modules``: ``model``, ``optimizer``, ``scheduler``, ``scaler``, ``transform``, ``ema`` (a
        :class:`~utils.training.weight_average.WeightEMA` or None): what a checkpoint saves."""
        self.cfg, self.dist, self.device, self.run_dir, self.state = cfg, dist, device, run_dir, state
        self.modules = modules
        self.checkpoint_dir = run_dir / "checkpoints"
        self.guard = DiskSpaceGuard(cfg.training.get("disk_reserve_gb", 0.0))
        self.timer = CheckpointTimer(cfg.training.get("checkpoint_every_minutes", 0))

    def contents(self, rng_per_rank: list[dict]) -> dict[str, Any]:
        """The checkpoint: module states, configs, RNG states of every rank and the :class:`TrainState` fields."""
        model, scaler, transform = self.modules["model"], self.modules["scaler"], self.modules["transform"]
        for name, parameter in model.named_parameters():
            if not torch.isfinite(parameter).all():  # the non-finite guard makes this unreachable; never save it
                raise RuntimeError(f"parameter {name} is not finite; refusing to write a checkpoint")
        fields = asdict(self.state)
        fields["step_loss_log"] = torch.tensor(self.state.step_loss_log, dtype=torch.float64).reshape(-1, 2)
        ema = self.modules.get("ema")
        return {
            "model": model.state_dict(),
            "weights": "raw",
            "ema": ema.state_dict() if ema is not None else None,
            "model_config": OmegaConf.to_container(self.cfg.model, resolve=True),
            "optimizer": self.modules["optimizer"].state_dict(),
            "scheduler": self.modules["scheduler"].state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "augment": transform.state_dict() if hasattr(transform, "state_dict") else None,
            "select_best_by": self.cfg.training.select_best_by,
            "rng": rng_per_rank[0],
            "rng_per_rank": rng_per_rank,  # one state per rank under torchrun
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            **fields,
            "layout": run_layout(self.cfg, self.dist),
            "launch": launch_id(),  # a torchrun restart resumes only this launch's checkpoints
        }

    def save(self, names: tuple[str, ...]) -> list[Path] | None:
        """Write ``checkpoints/<name>`` for each name (rank 0) and the loss logs; every rank learns whether that
        worked. Returns the files written on rank 0 (None elsewhere)."""
        rng_per_rank = self.dist.gather(capture_rng_state())

        def write() -> list[Path]:
            contents, written = self.contents(rng_per_rank), []
            for name in names:
                written += write_checkpoints([self.checkpoint_dir / name], self._variant(name, contents), self.guard)
            self._write_logs()
            return written

        written = self.dist.on_main(f"saving checkpoints in {self.checkpoint_dir}", write)
        self.timer.reset()
        return written

    @staticmethod
    def _variant(name: str, contents: dict[str, Any]) -> dict[str, Any]:
        """``best_model.pt`` holds the weights that were validated: the EMA when there is one."""
        if name == "best_model.pt" and contents["ema"] is not None:
            return {**contents, "model": contents["ema"]["model"], "weights": "ema"}
        return contents

    def save_epoch_weights(self, epoch: int) -> None:
        """``epoch{epoch}.pt`` (raw weights, model and run config) and the rotation to the last N epochs."""
        keep = self.cfg.training.get("keep_epoch_weights", 0)
        if not keep:
            return
        checkpoint = {"model": self.modules["model"].state_dict(), "weights": "raw", "epoch": epoch + 1,
                      "global_step": self.state.global_step, "model_config": OmegaConf.to_container(self.cfg.model, resolve=True),
                      "config": OmegaConf.to_container(self.cfg, resolve=True)}
        self.dist.on_main(f"saving the weights of epoch {epoch}",
                          lambda: write_epoch_weights(self.checkpoint_dir, epoch, checkpoint, keep, self.guard))

    def save_last(self) -> list[Path] | None:
        return self.save(("model.pt",))

    def after_step(self, stepped: bool) -> None:
        """The periodic saves: every ``checkpoint_every_steps`` steps, and when the timer is due on any rank."""
        every = self.cfg.training.checkpoint_every_steps
        every_steps = stepped and every and self.state.global_step % every == 0
        if every_steps or (self.timer.enabled and self.dist.any(self.timer.due(), self.device)):  # same decision on every rank
            if self.save_last():  # not if the disk is too full (rank 0 alone logs)
                log.info("checkpoint at step %d (epoch %d, batch %d)", self.state.global_step, self.state.epoch, self.state.batches_done)

    def end_epoch(self, epoch: int, selection_value: float | None) -> bool:
        """Close ``epoch`` in the state, apply the best-model rule, save; True if this epoch is the new best."""
        state = self.state
        best = improved(selection_value, state.best_metric, self.cfg.training.select_best_by)
        if best:
            state.best_metric, state.best_epoch = selection_value, epoch
        self.save_epoch_weights(epoch)  # before model.pt marks the epoch done: a kill in between redoes it
        state.epoch, state.batches_done, state.epoch_loss_sum, state.epoch_slices = epoch + 1, 0, 0.0, 0
        self.save(("model.pt", "best_model.pt") if best else ("model.pt",))
        return best

    def _write_logs(self) -> None:
        try:
            for name, attribute in LOGS.items():
                write_history(self.run_dir / name, getattr(self.state, attribute))
        except OSError as err:
            raise file_error(self.run_dir, f"cannot write the loss logs ({err.strerror or err})") from err
