"""Receive-coil physics for the simulator: sensitivity maps, background phase and correlated thermal noise.

The maps follow sigpy's ``birdcage_maps`` (coil magnitude falling off as 1/distance, phase winding with the
angle around each coil) with per-call randomness, so every simulated scan sees a slightly different array.
Noise is complex circular Gaussian with a realistic inter-coil covariance, as measured from noise-only
pre-scans on real arrays.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["birdcage_sensitivities", "smooth_phase", "noise_covariance", "correlated_noise"]


def _coil_layout(rng: np.random.Generator, num_coils: int, radius_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``num_coils`` elements on a randomly rotated, slightly elliptical ring.

    Returns (a, b), each ``(C,)`` in pixels: the two in-ring coordinates relative to the ring centre.
    """
    angles = rng.uniform(0.0, 2.0 * np.pi) + 2.0 * np.pi * np.arange(num_coils) / num_coils
    angles += rng.normal(0.0, 0.15 * np.pi / max(num_coils, 1), num_coils)  # imperfect element placement
    ellipticity = rng.uniform(-0.1, 0.1)
    tilt = rng.uniform(0.0, np.pi)
    a = radius_px * (1.0 + ellipticity) * np.cos(angles)
    b = radius_px * (1.0 - ellipticity) * np.sin(angles)
    rotated_a = math.cos(tilt) * a - math.sin(tilt) * b
    rotated_b = math.sin(tilt) * a + math.cos(tilt) * b
    jitter = rng.normal(0.0, 0.02 * radius_px, size=(2, num_coils))
    return (rotated_a + jitter[0]).astype(np.float32), (rotated_b + jitter[1]).astype(np.float32)


def birdcage_sensitivities(rng: np.random.Generator, num_coils: int, grid_shape: tuple[int, int],
                           center: tuple[float, float], radius_px: float,
                           axial_extent_px: float | None = None) -> np.ndarray:
    """Random birdcage-type coil sensitivity maps.

    Without ``axial_extent_px`` (head coil, axial slices) the elements sit on a ring of radius ``radius_px`` in
    the image plane around ``center`` = (row, col), as in sigpy's ``birdcage_maps``. With it (knee coil, coronal
    slices) the ring wraps around the H axis instead: each element has a column offset and an out-of-plane
    offset, so no element sits inside the leg, and the maps fall off smoothly along H beyond
    ``axial_extent_px`` (the length of leg the coil covers). Magnitude is ``1 / sqrt(d^2 + r0^2)``, phase is the
    angle around the element plus a random per-coil offset; gains vary by +-15 %.

    Args:
        rng: source of the ring rotation, ellipticity, element jitter, gains and phase offsets.
        num_coils: number of elements C (1..32).
        grid_shape: (H, W) image grid in pixels.
        center: (row, col) pixel of the object centre, where the maps are normalised.
        radius_px: ring radius in pixels (should exceed the object's half-size).
        axial_extent_px: coil coverage along H in pixels, or None for an in-plane ring.

    Returns:
        complex64 ``(C, H, W)`` maps whose root-sum-of-squares is 1 around ``center`` (not everywhere: the
        intensity bias towards the elements is kept, as on real arrays).
    """
    if num_coils < 1:
        raise ValueError(f"birdcage_sensitivities needs at least one coil, got num_coils={num_coils}.")
    height, width = grid_shape
    rows = np.arange(height, dtype=np.float32)[None, :, None] - np.float32(center[0])
    cols = np.arange(width, dtype=np.float32)[None, None, :] - np.float32(center[1])
    ring_a, ring_b = _coil_layout(rng, num_coils, radius_px)
    if axial_extent_px is None:
        # in-plane ring; small out-of-plane offsets stand for the array's several rings along z
        d_row, d_col = rows - ring_b[:, None, None], cols - ring_a[:, None, None]
        out_of_plane = rng.uniform(0.0, 0.3 * radius_px, num_coils).astype(np.float32)[:, None, None]
        phase_x, phase_y = d_col, d_row
    else:
        # ring around the H axis: ring_a along W, ring_b out of the image plane; one or two rings along H
        # arrays of 8+ elements have two rings along H, at about +-0.2 of the coverage
        ring_rows = 0.2 * axial_extent_px * np.where(np.arange(num_coils) % 2 == 0, -1.0, 1.0) * (num_coils >= 8)
        ring_rows = (ring_rows + rng.normal(0.0, 0.03 * axial_extent_px, num_coils)).astype(np.float32)
        d_row, d_col = rows - ring_rows[:, None, None], cols - ring_a[:, None, None]
        out_of_plane = ring_b[:, None, None]
        phase_x, phase_y = d_col, np.broadcast_to(out_of_plane, d_col.shape)
    coil_size = 0.25 * radius_px  # r0: keeps the magnitude finite next to an element
    planar_sq = phase_x * phase_x + phase_y * phase_y
    distance_sq = d_row * d_row + d_col * d_col + out_of_plane * out_of_plane + np.float32(coil_size**2)
    # magnitude / |phase vector|: multiplying (phase_x, phase_y) by it gives magnitude * exp(i * angle)
    factor = 1.0 / np.sqrt(np.maximum(planar_sq, 1e-12) * distance_sq)
    if axial_extent_px is not None:
        factor *= (1.0 / np.sqrt(1.0 + (2.0 * rows / axial_extent_px) ** 4)).astype(np.float32)  # ~0.7 at +-extent/2
    real, imag = factor * phase_x, factor * phase_y
    gains = rng.uniform(0.85, 1.15, num_coils) * np.exp(1j * rng.uniform(-np.pi, np.pi, num_coils))
    gain_re = gains.real.astype(np.float32)[:, None, None]
    gain_im = gains.imag.astype(np.float32)[:, None, None]
    maps = np.empty(real.shape, dtype=np.complex64)
    maps.real = gain_re * real - gain_im * imag
    maps.imag = gain_re * imag + gain_im * real
    maps *= 1.0 / _rss_near(maps, center)
    return maps


def _rss_near(maps: np.ndarray, center: tuple[float, float], half_size: int = 4) -> np.float32:
    """Mean root-sum-of-squares of ``maps`` (C, H, W) in a small window around ``center`` = (row, col)."""
    row = int(np.clip(round(center[0]), 0, maps.shape[1] - 1))
    col = int(np.clip(round(center[1]), 0, maps.shape[2] - 1))
    window = maps[:, max(row - half_size, 0):row + half_size + 1, max(col - half_size, 0):col + half_size + 1]
    return np.float32(np.sqrt((np.abs(window) ** 2).sum(axis=0)).mean())


def smooth_phase(rng: np.random.Generator, grid_shape: tuple[int, int]) -> np.ndarray:
    """Smooth random background phase (B0 / transmit phase), float32 ``(H, W)`` radians.

    A random second-order polynomial plus a very low-frequency random field (spatial frequencies up to two
    cycles across the grid), scaled so that its largest excursion from the mean is between 0.3 pi and pi.
    """
    height, width = grid_shape
    rows = np.linspace(-1.0, 1.0, height)[:, None]
    cols = np.linspace(-1.0, 1.0, width)[None, :]
    c = rng.normal(0.0, 1.0, 5)
    phase = c[0] * rows + c[1] * cols + 0.5 * (c[2] * rows**2 + c[3] * cols**2 + c[4] * rows * cols)
    # low-frequency field as a separable sum of random Fourier modes (no full-size FFT needed)
    for freq_row in range(3):
        for freq_col in range(3):
            amplitude = rng.normal(0.0, 0.5 / (1 + freq_row + freq_col))
            phi_row, phi_col = rng.uniform(0.0, 2.0 * np.pi, 2)
            phase = phase + amplitude * (np.cos(np.pi * freq_row * rows + phi_row)
                                         * np.cos(np.pi * freq_col * cols + phi_col))
    phase = phase - phase.mean()
    peak = np.abs(phase).max()
    return (phase * (rng.uniform(0.3, 1.0) * np.pi / max(peak, 1e-12))).astype(np.float32)


def noise_covariance(rng: np.random.Generator, num_coils: int) -> np.ndarray:
    """Random Hermitian positive-definite coil noise covariance, complex128 ``(C, C)``, unit mean diagonal.

    Built as ``B B^H`` with ``B`` the identity plus complex couplings to ring neighbours (|coupling| up to
    0.15, second neighbours weaker), so neighbouring elements correlate with |rho| up to about 0.3; per-coil
    noise levels vary by about +-20 % as on real arrays (different preamplifiers and loading).
    """
    coupling = np.eye(num_coils, dtype=np.complex128)
    for step, scale in ((1, 0.15), (2, 0.05)):
        if num_coils > step:
            for i in range(num_coils):
                j = (i + step) % num_coils
                if j != i:
                    value = rng.uniform(0.0, scale) * np.exp(1j * rng.uniform(-np.pi, np.pi))
                    coupling[i, j] += value
                    coupling[j, i] += np.conj(value)
    covariance = coupling @ coupling.conj().T
    levels = rng.uniform(0.8, 1.2, num_coils)
    covariance = covariance * np.sqrt(np.outer(levels, levels))
    covariance = 0.5 * (covariance + covariance.conj().T)
    return covariance / np.real(np.trace(covariance)) * num_coils


def correlated_noise(rng: np.random.Generator, shape: tuple[int, ...], covariance: np.ndarray,
                     sigma: float) -> np.ndarray:
    """Complex circular Gaussian noise with coil covariance ``sigma^2 * covariance``.

    Args:
        rng: random generator.
        shape: shape of one coil's noise (e.g. (H, W)); the coil axis is prepended.
        covariance: ``(C, C)`` Hermitian positive-definite coil covariance (unit diagonal -> E|n|^2 = sigma^2).
        sigma: noise standard deviation of a unit-variance coil (complex magnitude, both parts together).

    Returns:
        complex64 ``(C, *shape)`` noise.
    """
    num_coils = covariance.shape[0]
    cholesky = np.linalg.cholesky(covariance).astype(np.complex64)
    size = int(np.prod(shape, dtype=np.int64))
    white = np.empty((num_coils, size), dtype=np.complex64)
    # each part has variance 1/2 so that E|n|^2 = 1 before colouring
    white.real = rng.standard_normal((num_coils, size), dtype=np.float32)
    white.imag = rng.standard_normal((num_coils, size), dtype=np.float32)
    noise = (cholesky @ white) * np.float32(sigma / math.sqrt(2.0))
    return noise.reshape((num_coils,) + tuple(shape))
