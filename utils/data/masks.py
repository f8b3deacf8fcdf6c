"""Under-sampling masks along the phase-encode (last, W) axis.

The challenge masks (SPEC §1) are equispaced lines with an integer spacing equal to the nominal
acceleration (4 or 8) plus a contiguous block of low-frequency lines at the centre (about 26..39 lines,
i.e. 8% of W for W = 320..480). The effective acceleration W / sum(mask) is therefore below the nominal one.
A mask is a (W,) float32 vector of 0 and 1; the k-space centre (DC) is column ``W // 2``. The ACS
(auto-calibration) lines are the contiguous run of sampled columns containing the centre: the model finds them
per sample in a batch (:func:`acs_bounds_batched`, :func:`acs_mask`), GRAPPA on one mask (:func:`acs_bounds`).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["CENTER_FRACTION", "center_block", "equispaced_mask", "acs_bounds", "acs_bounds_batched", "acs_mask"]

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


def acs_bounds_batched(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First and one-past-last column of the ACS run around ``W // 2``, each ``(B,)`` int64.

    mask: ``(B, 1, 1, W, 1)`` of 0/1. The run is empty (start == end) when the centre column is not sampled.
    """
    sampled = mask[:, 0, 0, :, 0] > 0
    width = sampled.shape[-1]
    centre = width // 2
    columns = torch.arange(width, device=mask.device)
    unsampled = ~sampled
    last_gap_left = torch.where(unsampled & (columns < centre), columns, -1).amax(dim=-1)
    first_gap_right = torch.where(unsampled & (columns >= centre), columns, width).amin(dim=-1)
    has_centre = sampled[:, centre]
    start = torch.where(has_centre, last_gap_left + 1, centre)
    end = torch.where(has_centre, first_gap_right, centre)
    return start, end


def acs_mask(mask: torch.Tensor) -> torch.Tensor:
    """0/1 mask ``(B, 1, 1, W, 1)`` of the ACS lines only, same dtype as ``mask``."""
    start, end = acs_bounds_batched(mask)
    columns = torch.arange(mask.shape[-2], device=mask.device)
    inside = (columns >= start[:, None]) & (columns < end[:, None])
    return inside.to(mask.dtype)[:, None, None, :, None]


def acs_bounds(mask: np.ndarray | torch.Tensor) -> tuple[int, int]:
    """[start, stop) of the ACS run of one (W,) mask; ValueError if the centre column ``W // 2`` is not sampled."""
    start, end = acs_bounds_batched(torch.as_tensor(np.asarray(mask, dtype=np.float32)).view(1, 1, 1, -1, 1))
    if int(start) == int(end):
        raise ValueError("the centre column of the mask is not sampled, so there are no ACS lines")
    return int(start), int(end)
