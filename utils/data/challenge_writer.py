"""Write one volume of the challenge layout (SPEC §1): its k-space file and its image file.

For every slice of fully sampled multi-coil k-space ``(C, H, W)`` and the volume's mask ``(W,)``:
    image_label  = crop384(RSS(ifft2c(kspace)))
    image_input  = crop384(RSS(ifft2c(kspace * mask)))
    image_grappa = crop384(RSS(ifft2c(GRAPPA(kspace * mask))))
The k-space file holds ``kspace`` complex64 (S, C, H, W), fully sampled for train/val or ``kspace * mask`` for
the leaderboard, and ``mask`` float32 (W,). The image file holds the three images, float32 (S, 384, 384), and
the attributes ``max`` (the volume maximum of image_label, the SSIM data_range) and ``norm`` (its Euclidean
norm, as in fastMRI), plus ``annotations`` when the volume has lesion boxes (:mod:`utils.data.annotations`;
without boxes the file is exactly what it was before boxes existed). The synthetic generator and the fastMRI
converter both write through :func:`write_volume_files`, which streams slice by slice (one slice of k-space in
memory) into temporary files that are renamed only when the volume is complete.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

import h5py
import numpy as np
import torch

from utils.atomic import atomic_path
from utils.data.annotations import ANNOTATIONS_ATTR, Box, annotations_attr
from utils.mri.acs import acs_bounds
from utils.mri.coils import rss
from utils.mri.crop import CHALLENGE_SHAPE, center_crop_or_pad
from utils.mri.fft import ifft2c
from utils.mri.grappa import grappa_reconstruct, grid_offset

__all__ = ["IMAGE_KEYS", "rss_crop", "grappa_fits", "volume_attrs", "write_h5", "write_volume_files"]

IMAGE_KEYS = ("image_label", "image_input", "image_grappa")
# Stored on an image file whose mask GRAPPA cannot fill (not equispaced): image_grappa is then image_input.
NO_GRAPPA_NOTE = "image_grappa is the zero-filled image_input: GRAPPA needs an equispaced mask"


def rss_crop(kspace: np.ndarray) -> np.ndarray:
    """crop384(RSS(ifft2c(kspace))): (C, H, W) complex64 -> (384, 384) float32."""
    image = rss(ifft2c(torch.from_numpy(kspace)), dim=0)
    return center_crop_or_pad(image, CHALLENGE_SHAPE).numpy()


def grappa_fits(mask: np.ndarray, acceleration: int) -> bool:
    """Whether :func:`grappa_reconstruct` can fill ``mask``: equispaced with spacing ``acceleration`` outside
    a centre block wider than that spacing (the fastMRI mask families ``random`` and ``magic`` are not)."""
    try:
        grid_offset(mask, acceleration)
        start, stop = acs_bounds(mask)
    except ValueError:
        return False
    return stop - start > acceleration


def volume_attrs(label: np.ndarray) -> dict[str, float]:
    """``max`` and ``norm`` of a whole image_label volume (S, 384, 384)."""
    return {"max": float(label.max()), "norm": float(np.linalg.norm(label))}


def write_h5(path: Path, arrays: dict[str, np.ndarray], attrs: dict) -> None:
    """Write ``arrays`` as datasets and ``attrs`` as attributes of a new h5 file, atomically."""
    with atomic_path(path) as temporary, h5py.File(temporary, "w") as handle:
        for key, value in arrays.items():
            handle.create_dataset(key, data=value)
        handle.attrs.update(attrs)


def write_volume_files(
    kspace_path: Path,
    image_path: Path,
    slices: Iterable[np.ndarray],
    kspace_shape: tuple[int, int, int, int],
    mask: np.ndarray,
    acceleration: int,
    undersampled: bool,
    attrs: dict | None = None,
    annotations: Mapping[int, Sequence[Box]] | None = None,
) -> None:
    """Write the k-space and image files of one volume, each atomically, one slice at a time.

    Args:
        kspace_path, image_path: the two files (their folders must exist).
        slices: the volume's fully sampled k-space, one (C, H, W) complex64 slice after another.
        kspace_shape: (S, C, H, W) of the whole volume.
        mask: (W,) float32 0/1 mask; GRAPPA with spacing ``acceleration`` fills it where it can.
        undersampled: store ``kspace * mask`` (the leaderboard) instead of the full k-space (train/val).
        attrs: more attributes of the image file, beside ``max`` and ``norm``.
        annotations: lesion boxes by slice index, in the 384 space of image_label; stored as the image file's
            ``annotations`` when there is at least one (no attribute otherwise: no boxes).
    """
    num_slices = kspace_shape[0]
    boxed = sorted(index for index, boxes in (annotations or {}).items() if boxes)
    if boxed and not 0 <= boxed[0] <= boxed[-1] < num_slices:
        raise ValueError(f"{image_path.name}: boxes on slices {boxed}, but the volume has {num_slices} slices")
    images = {key: np.empty((num_slices, *CHALLENGE_SHAPE), np.float32) for key in IMAGE_KEYS}
    use_grappa = grappa_fits(mask, acceleration)
    # The image file is renamed into place before the k-space file: a volume counts as done only when both exist.
    with atomic_path(kspace_path) as temporary, h5py.File(temporary, "w") as handle:
        stored = handle.create_dataset("kspace", shape=kspace_shape, dtype=np.complex64)
        handle.create_dataset("mask", data=mask)
        count = 0
        for index, kspace in enumerate(slices):
            masked = kspace * mask
            images["image_label"][index] = rss_crop(kspace)
            images["image_input"][index] = rss_crop(masked)
            filled = grappa_reconstruct(masked, mask, acceleration) if use_grappa else masked
            images["image_grappa"][index] = rss_crop(filled)
            stored[index] = masked if undersampled else kspace
            count += 1
        if count != num_slices:
            raise ValueError(f"{kspace_path.name}: got {count} slices, expected {num_slices}")
        image_attrs = {**volume_attrs(images["image_label"]), **(attrs or {})}
        if not use_grappa:
            image_attrs["grappa"] = NO_GRAPPA_NOTE
        if boxed:
            image_attrs[ANNOTATIONS_ATTR] = annotations_attr(annotations)
        write_h5(image_path, images, image_attrs)
