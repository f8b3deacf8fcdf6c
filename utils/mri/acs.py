"""Auto-calibration (ACS) lines: the fully sampled low-frequency block of a phase-encode mask.

The model's sensitivity estimate, GRAPPA and coil compression all calibrate on these lines. A mask is 0/1
along the phase-encode axis W with DC at column ``W // 2``. Two readings of "the ACS block" exist:

- ``"contiguous"``: the whole run of sampled columns that contains ``W // 2``. GRAPPA and coil compression use
  it (:func:`acs_bounds`): every calibration line counts.
- ``"symmetric"``: E2E-VarNet's reading (fastMRI ``SensitivityModel.get_pad_and_num_low_freqs``, copied by the
  2025 entry): ``n = 2 * min(left, right)`` lines starting at ``(W - n + 1) // 2``, where ``left`` counts the
  sampled columns directly left of ``W // 2`` and ``right`` those from ``W // 2`` on. Real masks are
  asymmetric (the entry's brain masks have runs of 33 lines, of which this keeps 32), so the two differ.
  When the centre is not sampled the reference still keeps one line, ``n = 1``; so does this function.
  (fastMRI finds ``left`` with an ``argmin`` that returns 0 when every column left of the centre is sampled,
  so a fully sampled mask gives it 1 line; here it gives the whole width.)
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["ACS_MODES", "acs_bounds_batched", "acs_mask", "acs_bounds"]

ACS_MODES = ("symmetric", "contiguous")


def _runs_around_centre(sampled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Sampled run lengths left of ``W // 2`` (exclusive) and from it (inclusive), each ``(B,)``."""
    width = sampled.shape[-1]
    centre = width // 2
    columns = torch.arange(width, device=sampled.device)
    unsampled = ~sampled
    last_gap_left = torch.where(unsampled & (columns < centre), columns, -1).amax(dim=-1)
    first_gap_right = torch.where(unsampled & (columns >= centre), columns, width).amin(dim=-1)
    return centre - 1 - last_gap_left, first_gap_right - centre, centre


def acs_bounds_batched(mask: torch.Tensor, mode: str = "symmetric") -> tuple[torch.Tensor, torch.Tensor]:
    """First and one-past-last ACS column of each mask, each ``(B,)`` int64.

    mask: ``(B, 1, 1, W, 1)`` of 0/1. ``"contiguous"`` gives an empty block (start == end) when the centre
    column is not sampled; ``"symmetric"`` then gives the reference's single line.
    """
    if mode not in ACS_MODES:
        raise ValueError(f"ACS mode must be one of {ACS_MODES}, got {mode!r}")
    sampled = mask[:, 0, 0, :, 0] > 0
    width = sampled.shape[-1]
    left, right, centre = _runs_around_centre(sampled)
    if mode == "contiguous":
        start = torch.where(right > 0, centre - left, centre)
        return start, centre + right
    count = torch.clamp(2 * torch.minimum(left, right), min=1)
    start = torch.div(width - count + 1, 2, rounding_mode="floor")
    return start, start + count


def acs_mask(mask: torch.Tensor, mode: str = "symmetric") -> torch.Tensor:
    """0/1 mask ``(B, 1, 1, W, 1)`` of the ACS lines only, same dtype as ``mask``."""
    start, end = acs_bounds_batched(mask, mode)
    columns = torch.arange(mask.shape[-2], device=mask.device)
    inside = (columns >= start[:, None]) & (columns < end[:, None])
    return inside.to(mask.dtype)[:, None, None, :, None]


def acs_bounds(mask: np.ndarray | torch.Tensor) -> tuple[int, int]:
    """[start, stop) of the contiguous ACS run of one (W,) mask; ValueError if column ``W // 2`` is not sampled."""
    column_mask = torch.as_tensor(np.asarray(mask, dtype=np.float32)).view(1, 1, 1, -1, 1)
    start, end = acs_bounds_batched(column_mask, "contiguous")
    if int(start) == int(end):
        raise ValueError("the centre column of the mask is not sampled, so there are no ACS lines")
    return int(start), int(end)
