"""PromptMR+'s feature history: each cascade's decoder sees the same level's inputs of earlier cascades.

A U-Net records the input of each of its three decoder levels (the bottleneck output, then the outputs of
the two deeper decoder levels). A level with ``n_history > 0`` starts with a 1x1 "momentum" convolution over
``n_history + 1`` such blocks concatenated along channels, newest first: ``[current, previous, ..., oldest]``.

- The first cascade has no history: the momentum layer sees the current block tiled ``n_history + 1`` times,
  and the history handed on is the current block tiled ``n_history`` times.
- Every later cascade sees ``[current, history]`` and hands on ``[current, history without its last
  (oldest) block]``.

A history is one tensor per decoder level, deepest first, each ``(B, n_history * C_level, H_level, W_level)``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

__all__ = ["History", "momentum_input", "next_history"]

History = Optional[Sequence[torch.Tensor]]


def momentum_input(current: torch.Tensor, history: torch.Tensor | None, n_history: int) -> torch.Tensor:
    """``(B, C, H, W)`` and its level's history -> the momentum layer's input ``(B, (n_history + 1) C, H, W)``."""
    if history is None:
        return current.repeat(1, n_history + 1, 1, 1)
    return torch.cat([current, history], dim=1)


def next_history(current: torch.Tensor, history: torch.Tensor | None, n_history: int) -> torch.Tensor:
    """The history handed to the next cascade: ``(B, n_history * C, H, W)``, newest first, oldest dropped."""
    if history is None:
        return current.repeat(1, n_history, 1, 1)
    return torch.cat([current, history[:, : -current.shape[1]]], dim=1)
