"""What a slice scored, and how the leaderboards combine slices: one record, one Total per edition.

Training validation, expert validation and the leaderboard scorer all produce :class:`SliceScore` records and
combine them with the functions here, so the three report the same number for the same reconstructions.

- 2025 (:func:`leaderboard_total`): Total = (mean over the acc4 slices + mean over the acc8 slices) / 2; every
  slice weighs the same within its acceleration.
- 2026 (:func:`edition_2026`): per acceleration, SSIM_full is the mean over the slices with a foreground and
  SSIM_bbox the mean over every scored lesion box of its slices (0 where there is none, as the official script
  has it); each is averaged over acc4 and acc8, and Total = 0.5 SSIM_full + 0.5 SSIM_bbox + the speed
  tiebreak (:func:`tiebreak`: 0.001 at <= 80 ms/slice, falling linearly to 0 at >= 2,000 ms/slice; a missing
  time counts as 2,000 ms, the participants' reading of the rules, which fits the organisers' answers).

An acceleration with no slices is left out of the means (a validation split may hold one acceleration only).
Torch-free: the CPU scorer never imports torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

__all__ = ["SCORE_FIELDS", "SliceScore", "select", "mean_score", "volume_mean", "leaderboard_total", "ssim_bbox", "Edition2026", "edition_2026",
           "tiebreak", "TIEBREAK_MAX", "TIEBREAK_FAST_MS", "TIEBREAK_SLOW_MS"]

SCORE_FIELDS = ("ssim", "ssim_full", "zero_filled_ssim", "psnr", "nmse")
TIEBREAK_MAX = 0.001
TIEBREAK_FAST_MS, TIEBREAK_SLOW_MS = 80.0, 2000.0


@dataclass(frozen=True)
class SliceScore:
    """Scores of one slice of one volume.

    ``ssim`` is the 2025 official number: the mean of the whole 378x378 leaderboard SSIM map. ``ssim_full`` is
    the foreground-only mean of the SSIM map (the 2026 formula; NaN where the foreground is empty),
    ``box_ssims`` the 2026 SSIM of each scored lesion box of the slice, ``zero_filled_ssim`` the official SSIM of
    the zero-filled input (validation's baseline), ``psnr`` and ``nmse`` fastMRI's per-volume PSNR and NMSE of
    the slice's volume. NaN where not computed.
    """

    acceleration: int
    anatomy: str
    fname: str
    slice_idx: int
    ssim: float = math.nan
    ssim_full: float = math.nan
    zero_filled_ssim: float = math.nan
    box_ssims: tuple[float, ...] = ()
    psnr: float = math.nan
    nmse: float = math.nan

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


def volume_mean(scores: Iterable[SliceScore], field: str, acceleration: int | None = None, anatomy: str | None = None) -> float:
    """Mean over the selected volumes of a per-volume ``field`` (``psnr``, ``nmse``): each volume counts once."""
    per_volume = {(s.acceleration, s.fname): getattr(s, field) for s in select(scores, acceleration, anatomy)}
    values = [v for v in per_volume.values() if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def leaderboard_total(scores: Iterable[SliceScore], field: str = "ssim") -> float:
    """(mean of the acc4 slices + mean of the acc8 slices) / 2, over the accelerations present."""
    scores = list(scores)
    means = [mean_score(scores, field, acceleration) for acceleration in sorted({s.acceleration for s in scores})]
    means = [m for m in means if not math.isnan(m)]
    return float(np.mean(means)) if means else math.nan


def ssim_bbox(scores: Iterable[SliceScore], acceleration: int | None = None) -> float:
    """Mean SSIM over every scored box of the selected slices; 0 where there is none (the official script's)."""
    boxes = [value for s in select(scores, acceleration) for value in s.box_ssims]
    return float(np.mean(boxes)) if boxes else 0.0


def tiebreak(ms_per_slice: float | None) -> float:
    """The 2026 speed tiebreak: 0.001 at <= 80 ms/slice, linear to 0 at >= 2,000 ms/slice; None counts as 2,000."""
    if ms_per_slice is None or not math.isfinite(ms_per_slice):
        return 0.0
    fraction = (TIEBREAK_SLOW_MS - ms_per_slice) / (TIEBREAK_SLOW_MS - TIEBREAK_FAST_MS)
    return TIEBREAK_MAX * min(max(fraction, 0.0), 1.0)


@dataclass(frozen=True)
class Edition2026:
    """The 2026 leaderboard numbers: SSIM_full and SSIM_bbox per acceleration and averaged, and the Total."""

    ssim_full: dict[int, float]
    ssim_bbox: dict[int, float]
    boxes: dict[int, int]  # scored boxes per acceleration
    ms_per_slice: float | None

    @property
    def full(self) -> float:
        return float(np.mean(list(self.ssim_full.values()))) if self.ssim_full else math.nan

    @property
    def bbox(self) -> float:
        return float(np.mean(list(self.ssim_bbox.values()))) if self.ssim_bbox else math.nan

    @property
    def tiebreak(self) -> float:
        return tiebreak(self.ms_per_slice)

    @property
    def total(self) -> float:
        """0.5 SSIM_full + 0.5 SSIM_bbox + tiebreak."""
        return 0.5 * self.full + 0.5 * self.bbox + self.tiebreak


def edition_2026(scores: Iterable[SliceScore], ms_per_slice: float | None = None) -> Edition2026:
    """The 2026 numbers of ``scores`` (each acceleration present; its SSIM_full 0 where no slice has a foreground,
    as the official script has it)."""
    scores = list(scores)
    accelerations = sorted({s.acceleration for s in scores})
    full = {acc: mean_score(scores, "ssim_full", acc) for acc in accelerations}
    return Edition2026(
        ssim_full={acc: 0.0 if math.isnan(value) else value for acc, value in full.items()},
        ssim_bbox={acc: ssim_bbox(scores, acc) for acc in accelerations},
        boxes={acc: sum(len(s.box_ssims) for s in select(scores, acc)) for acc in accelerations},
        ms_per_slice=ms_per_slice,
    )
