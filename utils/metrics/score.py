"""What a slice scored, and how the leaderboard combines slices: one record, one Total.

Training validation, expert validation and the leaderboard scorer all produce :class:`SliceScore` records and
combine them with the functions here, so the three report the same number for the same reconstructions:

    Total = (mean over the acc4 slices + mean over the acc8 slices) / 2

Every slice weighs the same within its acceleration; an acceleration with no slices is left out of the Total
(a validation split may hold one acceleration only). Torch-free: the CPU scorer never imports torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

__all__ = ["SCORE_FIELDS", "SliceScore", "select", "mean_score", "leaderboard_total"]

SCORE_FIELDS = ("ssim", "ssim_full", "zero_filled_ssim")


@dataclass(frozen=True)
class SliceScore:
    """Scores of one slice of one volume.

    ``ssim`` is the official number: the mean of the whole 378x378 leaderboard SSIM map. ``ssim_full`` is the
    foreground-only mean of the 2026 edition (NaN where the foreground is empty), ``zero_filled_ssim`` the
    official SSIM of the zero-filled input (validation's baseline); NaN where not computed.
    """

    acceleration: int
    anatomy: str
    fname: str
    slice_idx: int
    ssim: float
    ssim_full: float = math.nan
    zero_filled_ssim: float = math.nan

    @property
    def group(self) -> str:
        """``"<anatomy>_acc<acceleration>"``, e.g. ``brain_acc4``."""
        return f"{self.anatomy}_acc{self.acceleration}"


def select(scores: Iterable[SliceScore], acceleration: int | None = None, anatomy: str | None = None) -> list[SliceScore]:
    """The scores of one acceleration and/or anatomy (None: any)."""
    return [s for s in scores if (acceleration is None or s.acceleration == acceleration) and (anatomy is None or s.anatomy == anatomy)]


def mean_score(
    scores: Iterable[SliceScore], field: str = "ssim", acceleration: int | None = None, anatomy: str | None = None
) -> float:
    """Mean of ``field`` over the selected slices, NaN values (an empty foreground) left out; NaN if none is left."""
    if field not in SCORE_FIELDS:
        raise ValueError(f"unknown score field {field!r}; choose one of {SCORE_FIELDS}")
    values = [getattr(s, field) for s in select(scores, acceleration, anatomy)]
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def leaderboard_total(scores: Iterable[SliceScore], field: str = "ssim") -> float:
    """(mean of the acc4 slices + mean of the acc8 slices) / 2, over the accelerations present."""
    scores = list(scores)
    means = [mean_score(scores, field, acceleration) for acceleration in sorted({s.acceleration for s in scores})]
    means = [m for m in means if not math.isnan(m)]
    return float(np.mean(means)) if means else math.nan
