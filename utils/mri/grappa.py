"""GRAPPA (Griswold et al. 2002) for the challenge's equispaced masks: the ``image_grappa`` the simulator stores.

The mask samples every R-th phase-encode column (axis W) plus a fully sampled centre block (ACS). Each
missing column ``g + m`` (0 < m < R) between two acquired grid columns ``g`` and ``g + R`` is a linear
combination, shared by all positions, of those two columns at readout positions ``h - 1, h, h + 1`` over all
coils (a 2 x 3 kernel). The weights are fitted on the ACS block by Tikhonov-regularised least squares, then
applied everywhere; acquired columns are finally put back unchanged (data consistency).
"""
from __future__ import annotations

import numpy as np

from utils.mri.acs import acs_bounds

__all__ = ["grid_offset", "grappa_reconstruct"]

_READOUT_TAPS = 3


def grid_offset(mask: np.ndarray, acceleration: int) -> int:
    """Column offset of the equispaced grid: the residue mod R shared by sampled columns outside the ACS."""
    mask = np.asarray(mask).reshape(-1) > 0
    start, stop = acs_bounds(mask)
    outside = np.flatnonzero(mask)
    outside = outside[(outside < start) | (outside >= stop)]
    if outside.size == 0:
        return start % acceleration
    residues = np.unique(outside % acceleration)
    if residues.size != 1:
        raise ValueError(f"mask is not equispaced with spacing {acceleration} outside its centre block")
    return int(residues[0])


def _sources(padded: np.ndarray, columns: np.ndarray, acceleration: int, height: int) -> np.ndarray:
    """Kernel source points for each (readout row, grid column): (H * G, 2 * 3 * C).

    padded: (C, H + 2, W') k-space padded by one readout row each side; columns index its last axis.
    """
    parts = [
        padded[:, tap : tap + height][:, :, columns + line * acceleration]
        for line in (0, 1)
        for tap in range(_READOUT_TAPS)
    ]  # each (C, H, G)
    stacked = np.stack(parts, axis=0)  # (6, C, H, G)
    return stacked.transpose(2, 3, 0, 1).reshape(height * len(columns), -1)


def _fit_weights(kspace: np.ndarray, acs: tuple[int, int], acceleration: int, regularization: float) -> np.ndarray:
    """Kernel weights (2 * 3 * C, (R - 1) * C) fitted on every kernel position inside the ACS block."""
    num_coils, height, _ = kspace.shape
    start, stop = acs
    columns = np.arange(start, stop - acceleration)
    if columns.size == 0:
        raise ValueError(f"the ACS block ({stop - start} columns) is too narrow for spacing {acceleration}")
    padded = np.pad(kspace, ((0, 0), (1, 1), (0, 0)))
    sources = _sources(padded, columns, acceleration, height)
    targets = np.stack([kspace[:, :, columns + m] for m in range(1, acceleration)], axis=0)  # (R-1, C, H, G)
    targets = targets.transpose(2, 3, 0, 1).reshape(height * columns.size, -1)
    gram = sources.conj().T @ sources
    damping = regularization * np.real(np.trace(gram)) / gram.shape[0]
    return np.linalg.solve(gram + damping * np.eye(gram.shape[0]), sources.conj().T @ targets)


def grappa_reconstruct(
    kspace: np.ndarray, mask: np.ndarray, acceleration: int, regularization: float = 1e-2
) -> np.ndarray:
    """Fill the missing columns of under-sampled multi-coil k-space.

    Args:
        kspace: (C, H, W) complex k-space, zero where not sampled.
        mask: (W,) 0/1 mask, equispaced with spacing ``acceleration`` plus a centre block.
        acceleration: the grid spacing R.
        regularization: Tikhonov weight relative to the mean eigenvalue of the normal matrix.
    Returns:
        (C, H, W) complex64 k-space with every column filled and the sampled columns unchanged.
    """
    kspace = np.asarray(kspace, dtype=np.complex128)
    sampled = np.asarray(mask).reshape(-1) > 0
    num_coils, height, width = kspace.shape
    if acceleration == 1:
        return kspace.astype(np.complex64)
    weights = _fit_weights(kspace, acs_bounds(sampled), acceleration, regularization)

    offset = grid_offset(sampled, acceleration)
    grid = np.arange(offset - acceleration, width, acceleration)  # one column before the first, to fill its left
    padded = np.pad(kspace * sampled, ((0, 0), (1, 1), (acceleration, acceleration)))
    predicted = _sources(padded, grid + acceleration, acceleration, height) @ weights  # (H * G, (R-1) * C)
    predicted = predicted.reshape(height, grid.size, acceleration - 1, num_coils).transpose(3, 0, 1, 2)

    targets = grid[:, None] + np.arange(1, acceleration)[None, :]  # (G, R-1) column of each prediction
    inside = (targets >= 0) & (targets < width)
    result = np.zeros_like(kspace)
    result[:, :, targets[inside]] = predicted[:, :, inside]
    result[:, :, sampled] = kspace[:, :, sampled]
    return result.astype(np.complex64)
