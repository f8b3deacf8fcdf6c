"""Simulate one challenge volume: anatomy -> coil images -> noisy k-space -> the stored h5 pair.

For every slice (SPEC §1):
    coil images  = scale * anatomy * exp(i * smooth phase) * birdcage sensitivity      (C, H, W)
    kspace       = fft2c(coil images) + correlated complex noise                          complex64
    image_label  = crop384(RSS(ifft2c(kspace)))           the stored full k-space, as in the real data
    image_input  = crop384(RSS(ifft2c(kspace * mask)))    the aliased zero-filled input
    image_grappa = crop384(RSS(ifft2c(GRAPPA(kspace * mask))))
Train/val files store the full k-space; leaderboard files store ``kspace * mask``. Attributes: ``max`` (the
volume maximum of image_label, the SSIM data_range) and ``norm`` (its Euclidean norm, as in fastMRI). The
images and files are made by :mod:`utils.data.challenge_writer`, shared with the fastMRI converter;
:func:`simulate_slices` alone also feeds the fastMRI-format files (:mod:`utils.data.synthetic.fastmri_format`).

All randomness comes from one ``np.random.Generator`` per volume, drawn in a fixed order, so a volume
depends only on (seed, split, anatomy, acceleration, index) and not on how many processes generate it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from utils.data.challenge_writer import write_volume_files
from utils.data.masks import equispaced_mask
from utils.data.synthetic.brain import BRAIN_CONTRASTS, render_brain_volume
from utils.data.synthetic.coils import birdcage_sensitivities, correlated_noise, noise_covariance, smooth_phase
from utils.data.synthetic.knee import KNEE_CONTRASTS, render_knee_volume
from utils.data.synthetic.presets import Preset
from utils.mri.crop import CHALLENGE_SHAPE, center_crop_or_pad
from utils.mri.fft import fft2c

__all__ = ["VolumeRecipe", "draw_recipe", "simulate_slices", "write_volume"]

_RENDERERS = {"brain": (render_brain_volume, BRAIN_CONTRASTS), "knee": (render_knee_volume, KNEE_CONTRASTS)}


@dataclass(frozen=True)
class VolumeRecipe:
    """Everything drawn at random for one volume before any pixel is made (cheap: used for size estimates)."""

    anatomy: str
    acceleration: int
    leaderboard: bool
    num_slices: int
    num_coils: int
    height: int
    width: int
    contrast: str
    pixel_mm: float
    target_max: float
    noise_level: float
    mask_offset: int

    @property
    def kspace_bytes(self) -> int:
        return self.num_slices * self.num_coils * self.height * self.width * 8

    @property
    def image_bytes(self) -> int:
        return 3 * self.num_slices * math.prod(CHALLENGE_SHAPE) * 4


def draw_recipe(rng: np.random.Generator, preset: Preset, anatomy: str, acceleration: int, leaderboard: bool) -> VolumeRecipe:
    """Draw the per-volume choices of ``anatomy`` from the ranges of ``preset``."""
    geometry = preset.geometry(anatomy)
    contrasts = _RENDERERS[anatomy][1]
    low_slices, high_slices = geometry.slices
    return VolumeRecipe(
        anatomy=anatomy,
        acceleration=acceleration,
        leaderboard=leaderboard,
        num_slices=int(rng.integers(low_slices, high_slices + 1)),
        num_coils=int(rng.choice(geometry.coils, p=geometry.coil_weights)),
        height=geometry.height,
        width=int(rng.choice(geometry.widths)),
        contrast=str(rng.choice(contrasts)),
        pixel_mm=float(geometry.pixel_mm * rng.uniform(0.95, 1.05)),
        target_max=float(rng.uniform(*geometry.target_max)),
        noise_level=float(rng.uniform(*geometry.noise_level)),
        mask_offset=int(rng.integers(acceleration)),
    )


def _coil_maps(rng: np.random.Generator, recipe: VolumeRecipe) -> np.ndarray:
    """Birdcage-type maps (C, H, W) around the object: a head coil for the brain, a knee coil along the leg."""
    grid = (recipe.height, recipe.width)
    center = (recipe.height / 2, recipe.width / 2)
    if recipe.anatomy == "brain":
        return birdcage_sensitivities(rng, recipe.num_coils, grid, center, radius_px=120.0 / recipe.pixel_mm)
    return birdcage_sensitivities(
        rng, recipe.num_coils, grid, center, radius_px=0.55 * recipe.width, axial_extent_px=150.0 / recipe.pixel_mm
    )


def simulate_slices(rng: np.random.Generator, recipe: VolumeRecipe) -> Iterator[np.ndarray]:
    """The volume of ``recipe``, one fully sampled (C, H, W) complex64 k-space slice after another.

    Lazily: the random draws of slice ``i`` happen when slice ``i`` is asked for, always in the same order.
    """
    render, _ = _RENDERERS[recipe.anatomy]
    grid = (recipe.height, recipe.width)
    anatomy = render(rng, recipe.num_slices, grid, recipe.pixel_mm, recipe.contrast)
    sens_maps = _coil_maps(rng, recipe)
    covariance = noise_covariance(rng, recipe.num_coils)

    # Scale so the noise-free RSS label peaks at the drawn volume max; noise then sets the RSS floor.
    clean_peak = center_crop_or_pad(anatomy * np.sqrt((np.abs(sens_maps) ** 2).sum(0)), CHALLENGE_SHAPE).max()
    scale = recipe.target_max / clean_peak
    sigma = recipe.noise_level * recipe.target_max / math.sqrt(recipe.num_coils)
    for index in range(recipe.num_slices):
        phase = smooth_phase(rng, grid)
        coil_images = (scale * anatomy[index] * np.exp(1j * phase))[None] * sens_maps
        kspace = fft2c(torch.from_numpy(coil_images.astype(np.complex64))).numpy()
        yield (kspace + correlated_noise(rng, grid, covariance, sigma)).astype(np.complex64)


def write_volume(rng: np.random.Generator, recipe: VolumeRecipe, kspace_path: Path, image_path: Path) -> None:
    """Simulate the volume of ``recipe`` and write its k-space and image files (each atomically)."""
    mask = equispaced_mask(recipe.width, recipe.acceleration, offset=recipe.mask_offset)
    shape = (recipe.num_slices, recipe.num_coils, recipe.height, recipe.width)
    write_volume_files(
        kspace_path, image_path, simulate_slices(rng, recipe), shape, mask, recipe.acceleration, recipe.leaderboard
    )
