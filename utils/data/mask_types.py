"""The fastMRI mask families for mask augmentation, drawn from a numpy Generator.

Each mask is the centre block of ``round(W * center_fraction)`` low-frequency columns (fastMRI places it at
``(W - n + 1) // 2``, which always contains the DC column ``W // 2``) united with high-frequency lines:

- ``equispaced``: every ``acceleration``-th column from a random offset (fastMRI ``EquiSpacedMaskFunc``); the
  centre block makes the effective acceleration lower than the nominal one, as in the challenge masks.
- ``equispaced_fraction``: spacing adjusted so the total is ``W / acceleration`` columns
  (``EquispacedMaskFractionFunc``; rounding makes the spacing only approximately equal).
- ``random``: each other column with probability ``(W / acc - n) / (W - n)``, ``W / acc`` lines on average
  (``RandomMaskFunc``).
- ``magic``: Defazio's offset sampling, equispaced with different offsets on the two halves of k-space so
  conjugate symmetry fills the gaps (``MagicMaskFunc``).
- ``magic_fraction``: magic with the spacing adjusted to ``W / acceleration`` columns in all and the centre
  block capped at that number (``MagicMaskFractionFunc``).
"""
from __future__ import annotations

import numpy as np

__all__ = ["MASK_TYPES", "fastmri_center_mask", "sample_mask"]

MASK_TYPES = ("equispaced", "equispaced_fraction", "random", "magic", "magic_fraction")


def fastmri_center_mask(width: int, num_low_frequencies: int) -> np.ndarray:
    """(W,) float32 with ones on fastMRI's centre block ``[(W - n + 1) // 2, ... + n)``."""
    mask = np.zeros(width, dtype=np.float32)
    start = (width - num_low_frequencies + 1) // 2
    mask[start : start + num_low_frequencies] = 1.0
    return mask


def _magic_lines(width: int, acceleration: int, rng: np.random.Generator) -> np.ndarray:
    offset = int(rng.integers(0, acceleration))
    offset_pos, offset_neg = (offset + 1, offset + 2) if offset % 2 == 0 else (offset + 2, offset - 1)
    positive = np.zeros((width + 1) // 2, dtype=np.float32)
    negative = np.zeros(width - (width + 1) // 2, dtype=np.float32)
    positive[offset_pos::acceleration] = 1.0
    negative[offset_neg::acceleration] = 1.0
    return np.fft.fftshift(np.concatenate((positive, negative[::-1])))


def _high_frequency_lines(kind: str, width: int, acceleration: int, low: int, rng: np.random.Generator) -> np.ndarray:
    lines = np.zeros(width, dtype=np.float32)
    if kind == "equispaced":
        lines[int(rng.integers(0, acceleration)) :: acceleration] = 1.0
    elif kind == "equispaced_fraction":
        spacing = acceleration * (low - width) / (low * acceleration - width)
        offset = int(rng.integers(0, max(1, round(spacing))))
        lines[np.around(np.arange(offset, width - 1, spacing)).astype(np.int64)] = 1.0
    elif kind == "random":
        probability = (width / acceleration - low) / (width - low)
        lines[rng.uniform(size=width) < probability] = 1.0
    elif kind == "magic":
        lines = _magic_lines(width, acceleration, rng)
    elif kind == "magic_fraction":
        remaining = round(width / acceleration) - low
        if remaining > 0:
            lines = _magic_lines(width, round(width / remaining), rng)
    else:
        raise ValueError(f"unknown mask type {kind!r}; choose one of {list(MASK_TYPES)}")
    return lines


def sample_mask(kind: str, width: int, acceleration: int, center_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A (W,) float32 0/1 mask of type ``kind`` (one of :data:`MASK_TYPES`), drawn from ``rng``."""
    low = round(width * center_fraction)
    if kind == "magic_fraction":
        low = max(min(low, round(width / acceleration)), 1)
    return np.maximum(fastmri_center_mask(width, low), _high_frequency_lines(kind, width, acceleration, low, rng))
