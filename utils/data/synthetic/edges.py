"""Soft edges for the phantoms: a one-unit-wide C1 step instead of one-pixel jumps, which would ring in k-space."""
from __future__ import annotations

import numpy as np

__all__ = ["smooth_step"]


def smooth_step(x: np.ndarray) -> np.ndarray:
    """C1 step from 0 (x <= -0.5) to 1 (x >= 0.5)."""
    t = np.clip(x + 0.5, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)
