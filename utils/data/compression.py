"""Coil compression to N virtual coils from the calibration (ACS) lines: SCC and GCC.

- **SCC** (software coil compression; Buehrer et al. 2007, Huang et al. 2008): one unitary coil mixing for the
  whole slice, the N leading left singular vectors of the calibration matrix ``(coils, samples)``.
- **GCC** (geometric-decomposition coil compression; Zhang et al., MRM 2013): the readout axis (H, fully
  sampled) is inverse-Fourier transformed first and every readout position x gets its own compression from
  the calibration data in a window of ``window`` positions around it; the matrices of neighbouring positions
  are then aligned (orthogonal Procrustes, from the centre outwards) so the virtual coils vary smoothly along
  x, which the network's convolutions and the sensitivity model need.

Only the sampled centre lines are used, so training (fully sampled k-space, mask applied afterwards) and
reconstruction (k-space already under-sampled) compress identically. Compression mixes coils linearly per
readout position, so it commutes with the column mask, and with N equal to the number of coils it is a unitary
change of basis that leaves the RSS image unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from omegaconf import DictConfig, OmegaConf

from utils.errors import UserInputError
from utils.mri.acs import acs_bounds

__all__ = ["COMPRESSION_METHODS", "CoilCompressor", "build_compressor", "calibration_columns", "scc_matrix", "gcc_matrices", "ifft_readout",
           "fft_readout"]

COMPRESSION_METHODS = ("scc", "gcc")


def ifft_readout(kspace: np.ndarray) -> np.ndarray:
    """Centred orthonormal inverse FFT along H of ``(C, H, W)``: the hybrid (x, k_y) space."""
    return np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(kspace, axes=-2), axis=-2, norm="ortho"), axes=-2)


def fft_readout(hybrid: np.ndarray) -> np.ndarray:
    """Inverse of :func:`ifft_readout`."""
    return np.fft.fftshift(np.fft.fft(np.fft.ifftshift(hybrid, axes=-2), axis=-2, norm="ortho"), axes=-2)


def calibration_columns(mask: np.ndarray, calibration_lines: int) -> slice:
    """The central ``calibration_lines`` columns of the mask's ACS run (all of it when shorter)."""
    start, stop = acs_bounds(mask)
    lines = min(calibration_lines, stop - start)
    first = start + (stop - start - lines) // 2
    return slice(first, first + lines)


def scc_matrix(calibration: np.ndarray, num_coils: int) -> np.ndarray:
    """``(C, N)`` with orthonormal columns: the leading left singular vectors of ``(C, ...)`` calibration data."""
    left, _, _ = np.linalg.svd(calibration.reshape(calibration.shape[0], -1).astype(np.complex128), full_matrices=False)
    return left[:, :num_coils]


def gcc_matrices(hybrid_calibration: np.ndarray, num_coils: int, window: int) -> np.ndarray:
    """``(H, C, N)`` aligned per-position compressions from hybrid calibration data ``(C, H, lines)``."""
    coils, height, _ = hybrid_calibration.shape
    data = hybrid_calibration.astype(np.complex128)
    half = window // 2
    padded = np.pad(data, ((0, 0), (half, half), (0, 0)), mode="edge")
    # (H, C, window * lines): each position's calibration matrix, its neighbours' samples included
    windows = np.stack([padded[:, x : x + window].reshape(coils, -1) for x in range(height)])
    left, _, _ = np.linalg.svd(windows, full_matrices=False)
    matrices = left[:, :, :num_coils].copy()
    centre = height // 2
    for order in (range(centre + 1, height), range(centre - 1, -1, -1)):
        for x in order:
            neighbour = matrices[x - 1] if x > centre else matrices[x + 1]
            u, _, vh = np.linalg.svd(matrices[x].conj().T @ neighbour)
            matrices[x] = matrices[x] @ (u @ vh)
    return matrices


@dataclass(frozen=True)
class CoilCompressor:
    """``(kspace (C, H, W), mask (W,)) -> (N, H, W)`` complex64; slices with fewer than N coils pass unchanged
    (with exactly N they are rotated to the virtual-coil basis, ordered by energy)."""

    method: str = "scc"
    num_coils: int = 8
    calibration_lines: int = 24
    window: int = 5  # GCC: readout positions pooled into each position's calibration

    def __post_init__(self):
        if self.method not in COMPRESSION_METHODS:
            raise ValueError(f"compressor.method must be one of {list(COMPRESSION_METHODS)}, got {self.method!r}")
        if self.num_coils < 1 or self.calibration_lines < 1 or self.window < 1 or self.window % 2 == 0:
            raise ValueError("compressor needs num_coils >= 1, calibration_lines >= 1 and an odd window >= 1")

    def __call__(self, kspace: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if kspace.shape[0] < self.num_coils:
            return kspace
        columns = calibration_columns(mask, self.calibration_lines)
        if self.method == "scc":
            matrix = scc_matrix(kspace[..., columns], self.num_coils)
            return np.einsum("cn,chw->nhw", matrix.conj(), kspace).astype(np.complex64)
        hybrid = ifft_readout(kspace)
        matrices = gcc_matrices(hybrid[..., columns], self.num_coils, self.window)
        return fft_readout(np.einsum("hcn,chw->nhw", matrices.conj(), hybrid)).astype(np.complex64)


def build_compressor(compressor_cfg: DictConfig | Mapping[str, Any] | None) -> CoilCompressor | None:
    """``compressor/*.yaml`` -> a :class:`CoilCompressor`, or None for ``method: null``."""
    if not compressor_cfg or compressor_cfg.get("method") in (None, "none"):
        return None
    node = OmegaConf.to_container(compressor_cfg, resolve=True) if isinstance(compressor_cfg, DictConfig) else compressor_cfg
    if not isinstance(node, dict):
        raise UserInputError(f"the compressor config must be a mapping of options, got {node!r}")
    try:
        return CoilCompressor(**node)
    except (TypeError, ValueError, OverflowError) as err:
        raise UserInputError(f"the compressor config cannot be built: {err}") from None
