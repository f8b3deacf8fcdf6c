"""Under-sampling masks along the phase-encode (last, W) axis.

The challenge masks (SPEC §1) are equispaced lines with an integer spacing equal to the nominal
acceleration (4 or 8) plus a contiguous block of low-frequency lines at the centre (about 26..39 lines,
i.e. 8% of W for W = 320..480). The effective acceleration W / sum(mask) is therefore below the nominal one.
A mask is a (W,) float32 vector of 0 and 1; the k-space centre (DC) is column ``W // 2``. Finding the ACS
(auto-calibration) lines of a mask is MRI maths shared by the model, GRAPPA and coil compression:
:mod:`utils.mri.acs`.
"""
from __future__ import annotations

import numpy as np

__all__ = ["CENTER_FRACTION", "center_block", "equispaced_mask"]

CENTER_FRACTION = 0.08


def center_block(width: int, num_low_frequencies: int) -> slice:
    """Columns of the centre block of ``num_low_frequencies`` lines, centred on ``width // 2``."""
    start = width // 2 - num_low_frequencies // 2
    return slice(start, start + num_low_frequencies)


def equispaced_mask(
    width: int,
    acceleration: int,
    num_low_frequencies: int | None = None,
    offset: int = 0,
) -> np.ndarray:
    """Challenge-style mask: every ``acceleration``-th column from ``offset`` plus the centre block.

    Args:
        width: number of phase-encode columns W.
        acceleration: spacing of the equispaced lines (4 or 8).
        num_low_frequencies: size of the centre block; default ``round(CENTER_FRACTION * width)``.
        offset: column of the first equispaced line, in ``[0, acceleration)``.
    Returns:
        (W,) float32 mask.
    """
    if acceleration < 1 or not 0 <= offset < acceleration:
        raise ValueError(f"need acceleration >= 1 and 0 <= offset < acceleration, got {acceleration}, {offset}")
    if num_low_frequencies is None:
        num_low_frequencies = round(CENTER_FRACTION * width)
    mask = np.zeros(width, dtype=np.float32)
    mask[offset::acceleration] = 1.0
    mask[center_block(width, num_low_frequencies)] = 1.0
    return mask
