"""Learning-rate schedules that need the run's length, and how every schedule is stepped.

Each ``configs/scheduler/*.yaml`` names a ``_partial_`` scheduler and an ``interval``: ``epoch`` (stepped after
each epoch) or ``step`` (after each optimizer step). :func:`build_scheduler` passes the run's length to the
schedules that need it (``total_steps``, and OneCycle's ``max_lr`` = the optimizer's lr, so ``optimizer.lr=``
stays the one knob). ``ReduceLROnPlateau`` steps after each validation with the validation SSIM.
"""
from __future__ import annotations

import inspect
import math

import torch
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau

__all__ = ["cosine_with_warmup", "scheduler_arguments", "is_plateau"]


def cosine_with_warmup(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0
) -> LambdaLR:
    """Linear warm-up from ``lr / warmup_steps`` to ``lr`` over ``warmup_steps`` steps, then cosine decay to
    ``min_lr_ratio * lr`` at ``total_steps``."""
    if total_steps < 1 or warmup_steps < 0 or not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError("cosine_with_warmup needs total_steps >= 1, warmup_steps >= 0 and 0 <= min_lr_ratio <= 1")
    warmup_steps = min(warmup_steps, total_steps - 1)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def _callable_parameters(factory) -> set[str]:
    target = getattr(factory, "func", factory)
    return set(inspect.signature(target).parameters)


def scheduler_arguments(factory, optimizer: torch.optim.Optimizer, total_steps: int, given: set[str]) -> dict:
    """The run-length arguments ``factory`` accepts and the config did not set."""
    accepted = _callable_parameters(factory)
    arguments = {}
    if "total_steps" in accepted and "total_steps" not in given:
        arguments["total_steps"] = total_steps
    if "max_lr" in accepted and "max_lr" not in given:
        arguments["max_lr"] = [group["lr"] for group in optimizer.param_groups]
    return arguments


def is_plateau(scheduler) -> bool:
    return isinstance(scheduler, ReduceLROnPlateau)
