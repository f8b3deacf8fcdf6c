"""One epoch of optimizer steps: gradient accumulation, clipping, the non-finite guard and resumable progress.

Under DDP (``dist`` with several ranks) the gradients of an accumulation group are all-reduced once, at its
last batch (``no_sync`` before), and every decision that changes control flow is collective: a stop signal
seen by any rank stops all of them at the same batch, and a non-finite loss on any rank skips the step on
all of them (that rank still takes part in the gradient all-reduce, with zero gradients). The logged losses
are sums over all ranks.

Progress is committed only at optimizer-step boundaries: ``TrainState.batches_done`` and the epoch's running
loss count the batches whose gradients are in the weights. A checkpoint written at any point (every N steps,
on a stop signal) therefore resumes exactly: the epoch's batch order depends on (seed, epoch) alone, the first
``batches_done`` batches are skipped, and a half-accumulated group is simply recomputed.
"""
from __future__ import annotations

import logging
import math
import signal
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from utils.distributed import Distributed
from utils.errors import UserInputError
from utils.inference.reconstruct import run_model
from utils.training.interrupt import Interrupted, StopOnSignal

__all__ = ["AMP_DTYPES", "TrainState", "make_grad_scaler", "train_one_epoch"]

log = logging.getLogger("train")


@dataclass
class TrainState:
    """Everything a checkpoint must carry besides the module states, as plain data."""

    epoch: int = 0  # epochs completed
    global_step: int = 0  # optimizer steps taken
    batches_done: int = 0  # batches of the unfinished epoch already in the weights
    epoch_loss_sum: float = 0.0  # sum of loss * slices over those batches
    epoch_slices: int = 0
    skipped_steps: int = 0  # optimizer steps skipped for a non-finite loss or gradient
    best_metric: float | None = None
    best_epoch: int | None = None
    train_loss_log: list[list[float]] = field(default_factory=list)  # (epoch, mean loss)
    val_loss_log: list[list[float]] = field(default_factory=list)
    val_ssim_log: list[list[float]] = field(default_factory=list)
    val_zero_filled_ssim_log: list[list[float]] = field(default_factory=list)  # the zero-filled baseline, for the curves
    val_total_2026_log: list[list[float]] = field(default_factory=list)  # 0.5 SSIM_full + 0.5 SSIM_bbox (2026, no tiebreak)
    step_loss_log: list[list[float]] = field(default_factory=list)  # (global step, mean loss of the step)
    validations_since_best: int = 0  # for early stopping on validation SSIM
    init_from: dict | None = None  # where the starting weights came from (training.init_from), else None


AMP_DTYPES = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def make_grad_scaler(amp: str, device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler, enabled for fp16 only (bf16 has float32's range and needs no loss scaling)."""
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")


def check_stop(stop: StopOnSignal, dist: Distributed, device: torch.device) -> None:
    """Raise :class:`Interrupted` on every rank when any rank received a stop signal."""
    if dist.any(stop.signum is not None, device):
        raise Interrupted(stop.signum or signal.SIGTERM)


def _zero_loss(model: nn.Module) -> torch.Tensor:
    """0 with a (zero) gradient for every parameter: lets a rank join the all-reduce without its bad loss."""
    return sum((parameter.reshape(-1)[:1] * 0.0).sum() for parameter in model.parameters())


def _skip_step(state: TrainState, policy: str, reason: str) -> None:
    state.skipped_steps += 1
    if policy == "stop":
        raise UserInputError(f"training stopped at step {state.global_step + 1}: {reason} (training.nonfinite=skip would skip such steps)")
    log.warning("skipped step %d: %s (%d skipped so far)", state.global_step + 1, reason, state.skipped_steps)


@dataclass
class _Group:
    """The accumulation group in progress: its summed loss x slices, its slices, and why it must be skipped."""

    loss: float = 0.0
    slices: int = 0
    bad: str | None = None


def _accumulate(model: nn.Module, batch, loss_fn: nn.Module, group: _Group, group_size: int, amp_dtype, scaler: torch.amp.GradScaler,
                device: torch.device, dist: Distributed) -> None:
    """Forward and backward one batch into the group's gradients (a non-finite loss marks the group bad instead)."""
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        output = run_model(model, batch, device)
    max_value = batch.max_value.to(device=device, dtype=torch.float64)
    loss = loss_fn(output.float(), batch.target.to(device), batch.fg_mask.to(device), max_value, batch.box_mask.to(device))
    if torch.isfinite(loss):
        scaler.scale(loss / group_size).backward()
        group.loss, group.slices = group.loss + loss.item() * len(output), group.slices + len(output)
        return
    if group.bad is None:
        group.bad = f"non-finite loss on {batch.fname[0]} slice {int(batch.slice_idx[0])}"
    if dist.enabled:
        _zero_loss(model).backward()


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, group: _Group, batch, state: TrainState,
          settings, device: torch.device, dist: Distributed) -> bool:
    """End an accumulation group: clip, then step, or skip a non-finite or overflowing step; True if stepped."""
    if dist.any(group.bad is not None, device) and group.bad is None:
        group.bad = "non-finite loss on another rank"
    if dist.enabled:
        group.loss, slices = dist.sum([group.loss, group.slices], device)
        group.slices = int(round(slices))
    max_norm = settings.grad_clip if settings.grad_clip is not None else math.inf
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    overflow = scaler.is_enabled() and group.bad is None and not torch.isfinite(grad_norm)
    if group.bad is None and not torch.isfinite(grad_norm) and not overflow:
        group.bad = f"non-finite gradient norm after {batch.fname[0]} slice {int(batch.slice_idx[0])}"
    stepped = group.bad is None and not overflow
    if stepped:
        scaler.step(optimizer)
        state.global_step += 1
        state.epoch_loss_sum += group.loss
        state.epoch_slices += group.slices
        state.step_loss_log.append([state.global_step, group.loss / group.slices])
    elif overflow:
        state.skipped_steps += 1
        log.info("fp16 gradient overflow at step %d: step skipped, loss scale lowered from %g", state.global_step + 1, scaler.get_scale())
    else:
        _skip_step(state, settings.nonfinite, group.bad)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return stepped


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    num_batches: int,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    on_step: Callable[[bool], None],
    state: TrainState,
    settings,
    device: torch.device,
    stop: StopOnSignal,
    progress: bool = True,
    scaler: torch.amp.GradScaler | None = None,
    dist: Distributed | None = None,
) -> float:
    """Continue the current epoch from ``state.batches_done``; returns the epoch's mean loss per slice.

    ``on_step(stepped)`` runs at every step boundary, ``stepped`` False where the step was skipped
    (per-step scheduler, periodic checkpoints). With ``settings.amp`` the forward pass runs under autocast
    (the model keeps FFTs and data consistency in float32) and, for fp16, the loss is scaled by ``scaler``:
    a step whose scaled gradients overflow is skipped and the scale lowered, as GradScaler does.
    """
    model.train()
    amp_dtype = AMP_DTYPES[settings.get("amp", "none")]
    scaler = scaler or make_grad_scaler("none", device)
    dist = dist or Distributed()
    accumulation = settings.grad_accumulation
    group = _Group()
    optimizer.zero_grad(set_to_none=True)
    bar = tqdm(loader, desc=f"epoch {state.epoch}/{settings.epochs - 1}", unit="batch", disable=not progress,
               initial=state.batches_done, total=num_batches)
    for position, batch in enumerate(bar, start=state.batches_done):
        check_stop(stop, dist, device)
        group_start = position - position % accumulation
        group_size = min(accumulation, num_batches - group_start)  # the last group of an epoch may be short
        last_of_group = position + 1 == group_start + group_size
        with nullcontext() if last_of_group or not hasattr(model, "no_sync") else model.no_sync():
            _accumulate(model, batch, loss_fn, group, group_size, amp_dtype, scaler, device, dist)
        if not last_of_group:
            continue
        stepped = _step(model, optimizer, scaler, group, batch, state, settings, device, dist)
        state.batches_done, group = position + 1, _Group()
        if state.epoch_slices:
            bar.set_postfix(loss=f"{state.epoch_loss_sum / state.epoch_slices:.4f}")
        on_step(stepped)
    check_stop(stop, dist, device)
    return state.epoch_loss_sum / state.epoch_slices if state.epoch_slices else math.nan
