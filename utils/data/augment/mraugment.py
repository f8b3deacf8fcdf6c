"""MRAugment (Fabian et al., 2021): physics-aware geometric augmentation of multi-coil k-space.

The fully sampled k-space goes to the coil-image domain, every coil image gets the same random flips and
affine transform (rotation, isotropic scaling, translation, shear; bilinear interpolation, reflection at the
borders), and both the k-space and the target are recomputed from the augmented coil images: the k-space is
their centred FFT, the target their RSS centre-cropped to 384 x 384. The network therefore always sees a
consistent (k-space, target) pair; the under-sampling mask is applied afterwards, as for real data.

Geometry is in pixel units (the readout-oversampled axis is not rescaled), the convention of MRAugment.
Every draw comes from the ``rng`` the caller passes (the dataset's per-example generator).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from utils.mri.coils import rss
from utils.mri.crop import CHALLENGE_SHAPE, center_crop_or_pad
from utils.mri.fft import fft2c, ifft2c

__all__ = ["AUGMENTATIONS", "ImageAugmentParams", "draw_params", "affine_matrix", "augment_coil_images", "augment_kspace",
           "augment_box_mask"]

AUGMENTATIONS = ("flip_h", "flip_v", "rotation", "scaling", "translation", "shear")


@dataclass(frozen=True)
class ImageAugmentParams:
    """One slice's draw: flips, and an affine transform (identity values when that augmentation is off)."""

    flip_h: bool = False  # mirror along W (left-right)
    flip_v: bool = False  # mirror along H (up-down)
    rotation_deg: float = 0.0
    scale: float = 1.0
    translation: tuple[float, float] = (0.0, 0.0)  # (x along W, y along H) in pixels
    shear_deg: tuple[float, float] = (0.0, 0.0)  # (x, y)

    @property
    def is_affine_identity(self) -> bool:
        return (self.rotation_deg == 0.0 and self.scale == 1.0 and self.translation == (0.0, 0.0)
                and self.shear_deg == (0.0, 0.0))

    @property
    def is_identity(self) -> bool:
        return not self.flip_h and not self.flip_v and self.is_affine_identity


def draw_params(
    rng: np.random.Generator,
    probability: float,
    weights: dict[str, float],
    shape: tuple[int, int],
    max_rotation_deg: float,
    scale_range: Sequence[float],
    max_translation: Sequence[float],
    max_shear_deg: float,
) -> ImageAugmentParams:
    """Each augmentation is on with probability ``probability * weights[name]``; its value is then uniform.

    ``shape`` is the image ``(H, W)``; ``max_translation`` is ``(x, y)`` as fractions of ``(W, H)``.
    The draws happen in a fixed order whatever is switched on, so one slice's draw never shifts another's.
    """
    on = {name: rng.uniform() < probability * float(weights.get(name, 0.0)) for name in AUGMENTATIONS}
    rotation = rng.uniform(-max_rotation_deg, max_rotation_deg)
    scale = rng.uniform(*scale_range)
    shift = rng.uniform(-1.0, 1.0, size=2) * np.asarray(max_translation) * np.asarray([shape[1], shape[0]])
    shear = rng.uniform(-max_shear_deg, max_shear_deg, size=2)
    return ImageAugmentParams(
        flip_h=bool(on["flip_h"]),
        flip_v=bool(on["flip_v"]),
        rotation_deg=float(rotation) if on["rotation"] else 0.0,
        scale=float(scale) if on["scaling"] else 1.0,
        translation=(float(shift[0]), float(shift[1])) if on["translation"] else (0.0, 0.0),
        shear_deg=(float(shear[0]), float(shear[1])) if on["shear"] else (0.0, 0.0),
    )


def affine_matrix(params: ImageAugmentParams) -> np.ndarray:
    """3x3 forward map of centred pixel coordinates ``(x, y, 1)``: shear, then scale, rotate, translate."""
    angle = math.radians(params.rotation_deg)
    rotation = np.array([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]])
    shear_x, shear_y = (math.tan(math.radians(value)) for value in params.shear_deg)
    shear = np.array([[1, shear_x, 0], [shear_y, 1, 0], [0, 0, 1]])
    scale = np.diag([params.scale, params.scale, 1.0])
    translation = np.array([[1, 0, params.translation[0]], [0, 1, params.translation[1]], [0, 0, 1]])
    return translation @ rotation @ scale @ shear


def augment_coil_images(images: torch.Tensor, params: ImageAugmentParams, padding_mode: str = "reflection") -> torch.Tensor:
    """Coil images ``(C, H, W)`` complex -> the same transform applied to every coil, ``(C, H, W)`` complex
    (``padding_mode`` of ``grid_sample`` outside the image: reflection for images, zeros for masks)."""
    if params.flip_h:
        images = images.flip(-1)
    if params.flip_v:
        images = images.flip(-2)
    if params.is_affine_identity:
        return images
    coils, height, width = images.shape
    # affine_grid maps output to input in normalised coordinates u = x / (W / 2) (align_corners=False)
    to_pixels = np.diag([width / 2.0, height / 2.0, 1.0])
    inverse = np.linalg.inv(to_pixels) @ np.linalg.inv(affine_matrix(params)) @ to_pixels
    theta = torch.as_tensor(inverse[:2], dtype=torch.float32, device=images.device)[None]  # the grid goes where the images are
    grid = F.affine_grid(theta, [1, 2 * coils, height, width], align_corners=False)
    channels = torch.view_as_real(images).permute(0, 3, 1, 2).reshape(1, 2 * coils, height, width)
    warped = F.grid_sample(channels, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    warped = warped.reshape(coils, 2, height, width).permute(0, 2, 3, 1).contiguous()
    return torch.view_as_complex(warped)


def augment_kspace(kspace: np.ndarray, params: ImageAugmentParams) -> tuple[np.ndarray, np.ndarray]:
    """Fully sampled ``(C, H, W)`` complex64 k-space -> (augmented k-space, its RSS target ``(384, 384)``)."""
    images = augment_coil_images(ifft2c(torch.from_numpy(np.ascontiguousarray(kspace))), params)
    target = center_crop_or_pad(rss(images, dim=0), CHALLENGE_SHAPE)
    return fft2c(images).numpy().astype(np.complex64), target.numpy().astype(np.float32)


def augment_box_mask(box_mask: np.ndarray, params: ImageAugmentParams, image_shape: tuple[int, int]) -> np.ndarray:
    """The (384, 384) lesion-box mask of a target moved with its image: placed on the ``image_shape`` (H, W) grid
    where the target's centre crop took it from, transformed as the coil images are (zeros outside), cropped
    again and thresholded at 0.5 -> (384, 384) float32 of 0/1."""
    grid = center_crop_or_pad(torch.from_numpy(np.ascontiguousarray(box_mask, dtype=np.float32)), tuple(image_shape))
    warped = augment_coil_images(torch.complex(grid, torch.zeros_like(grid))[None], params, padding_mode="zeros")[0].real
    return (center_crop_or_pad(warped, CHALLENGE_SHAPE) > 0.5).numpy().astype(np.float32)
