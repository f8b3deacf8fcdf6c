"""Simulate one challenge volume: anatomy -> coil images -> noisy k-space -> the stored h5 pair.

For every slice (SPEC §1):
    coil images  = scale * anatomy * exp(i * smooth phase) * birdcage sensitivity      (C, H, W)
    kspace       = fft2c(coil images) + correlated complex noise                          complex64
    image_label  = crop384(RSS(ifft2c(kspace)))           the stored full k-space, as in the real data
    image_input  = crop384(RSS(ifft2c(kspace * mask)))    the aliased zero-filled input
    image_grappa = crop384(RSS(ifft2c(GRAPPA(kspace * mask))))
The anatomy carries synthetic lesions (:mod:`utils.data.synthetic.lesions`), drawn into the object before the
coils, so k-space and all three images show them; their boxes, moved into the 384 space of image_label, are
the image file's ``annotations`` (:mod:`utils.data.annotations`). Train/val files store the full k-space;
leaderboard files store ``kspace * mask``. Attributes: ``max`` (the volume maximum of image_label, the SSIM
data_range) and ``norm`` (its Euclidean norm, as in fastMRI). The images and files are made by
:mod:`utils.data.challenge_writer`, shared with the fastMRI converter; :func:`simulate_volume` alone also
feeds the fastMRI-format files (:mod:`utils.data.synthetic.fastmri_format`).

All randomness comes from one ``np.random.Generator`` per volume, drawn in a fixed order, so a volume
depends only on (seed, split, anatomy, acceleration, index) and not on how many processes generate it. The
lesions draw from a child of it (``rng.spawn``), which leaves its own stream untouched: without the lesions,
a volume is bit-identical to what it was before lesions existed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from utils.data.annotations import Box, crop_boxes
from utils.data.challenge_writer import write_volume_files
from utils.data.masks import equispaced_mask
from utils.data.synthetic.brain import BRAIN_CONTRASTS, render_brain
from utils.data.synthetic.coils import birdcage_sensitivities, correlated_noise, noise_covariance, smooth_phase
from utils.data.synthetic.knee import KNEE_CONTRASTS, render_knee
from utils.data.synthetic.lesions import add_lesions
from utils.data.synthetic.presets import Preset
from utils.mri.crop import CHALLENGE_SHAPE, center_crop_or_pad
from utils.mri.fft import fft2c

__all__ = ["VolumeRecipe", "draw_recipe", "render_object", "simulate_volume", "write_volume"]

_RENDERERS = {"brain": (render_brain, BRAIN_CONTRASTS), "knee": (render_knee, KNEE_CONTRASTS)}


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


def render_object(rng: np.random.Generator, recipe: VolumeRecipe,
                  lesions: bool = True) -> tuple[np.ndarray, dict[int, list[Box]]]:
    """The noise-free object of ``recipe``, float32 (S, H, W) with maximum about 1, and its lesions' boxes
    by slice in the (H, W) grid (none when ``lesions`` is False; the object is then lesion-free)."""
    render, _ = _RENDERERS[recipe.anatomy]
    lesion_rng = rng.spawn(1)[0]  # its own stream: the rest of the volume does not depend on the lesions
    phantom = render(rng, recipe.num_slices, (recipe.height, recipe.width), recipe.pixel_mm, recipe.contrast)
    if not lesions:
        return phantom.volume, {}
    return phantom.volume, add_lesions(lesion_rng, phantom, recipe.anatomy, recipe.contrast, recipe.pixel_mm)


def simulate_volume(rng: np.random.Generator, recipe: VolumeRecipe,
                    lesions: bool = True) -> tuple[dict[int, list[Box]], Iterator[np.ndarray]]:
    """The volume of ``recipe``: its lesion boxes by slice in the (H, W) grid, and its fully sampled k-space,
    one (C, H, W) complex64 slice after another.

    The object, coil maps and noise covariance are made now; the k-space lazily: the random draws of slice
    ``i`` happen when slice ``i`` is asked for, always in the same order.
    """
    anatomy, boxes = render_object(rng, recipe, lesions)
    sens_maps = _coil_maps(rng, recipe)
    covariance = noise_covariance(rng, recipe.num_coils)

    # Scale so the noise-free RSS label peaks at the drawn volume max; noise then sets the RSS floor.
    clean_peak = center_crop_or_pad(anatomy * np.sqrt((np.abs(sens_maps) ** 2).sum(0)), CHALLENGE_SHAPE).max()
    scale = recipe.target_max / clean_peak
    sigma = recipe.noise_level * recipe.target_max / math.sqrt(recipe.num_coils)
    return boxes, _kspace_slices(rng, anatomy * scale, sens_maps, covariance, sigma)


def _kspace_slices(rng: np.random.Generator, anatomy: np.ndarray, sens_maps: np.ndarray, covariance: np.ndarray,
                   sigma: float) -> Iterator[np.ndarray]:
    """fft2c(anatomy * smooth phase * sens_maps) + correlated noise, per slice: (S, H, W) -> (C, H, W) each."""
    grid = anatomy.shape[1:]
    for index in range(anatomy.shape[0]):
        phase = smooth_phase(rng, grid)
        coil_images = (anatomy[index] * np.exp(1j * phase))[None] * sens_maps
        kspace = fft2c(torch.from_numpy(coil_images.astype(np.complex64))).numpy()
        yield (kspace + correlated_noise(rng, grid, covariance, sigma)).astype(np.complex64)


def write_volume(rng: np.random.Generator, recipe: VolumeRecipe, kspace_path: Path, image_path: Path) -> None:
    """Simulate the volume of ``recipe`` and write its k-space and image files (each atomically), with its
    lesions' boxes as the image file's ``annotations``."""
    mask = equispaced_mask(recipe.width, recipe.acceleration, offset=recipe.mask_offset)
    shape = (recipe.num_slices, recipe.num_coils, recipe.height, recipe.width)
    boxes, slices = simulate_volume(rng, recipe)
    annotations = crop_boxes(boxes, (recipe.height, recipe.width))
    write_volume_files(
        kspace_path, image_path, slices, shape, mask, recipe.acceleration, recipe.leaderboard, annotations=annotations
    )
