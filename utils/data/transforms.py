"""From a raw slice (numpy, as stored) to a model-ready sample (torch).

The dataset reads a :class:`RawSlice`; a transform ``(raw, rng) -> Sample`` turns it into a :class:`Sample`.
``rng`` is a ``np.random.Generator`` seeded per example and epoch by the dataset: a transform that draws
anything draws it from ``rng`` only, which keeps runs reproducible with any number of DataLoader workers.
The default, :class:`ApplyFileMask`, applies the mask stored in the file (and the coil compression, if any)
and draws nothing. The training transform (:mod:`utils.data.augment`: MRAugment, mask augmentation) takes the
same input and returns the same output.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import torch

from utils.data.annotations import Box, box_mask, scored_boxes
from utils.errors import UserInputError
from utils.metrics.foreground import foreground_mask
from utils.mri.crop import CHALLENGE_SHAPE

__all__ = ["MAX_BOXES", "RawSlice", "Sample", "box_tensors", "to_sample", "ApplyFileMask"]

MAX_BOXES = 32  # lesion boxes per slice a sample carries (fastMRI+ and the synthetic data have a handful)


class RawSlice(NamedTuple):
    """One slice as read from disk.

    kspace: (C, H, W) complex64; fully sampled for train/val, already under-sampled for the leaderboard.
    mask: (W,) float32 of 0/1 along the phase-encode axis.
    target: (384, 384) float32 ``image_label``, or None in k-space-only (leaderboard) mode.
    max_value: the volume's ``max`` attribute (SSIM data_range), NaN without a target.
    boxes: the slice's lesion boxes (:class:`utils.data.annotations.Box`, 384 x 384 space), as stored.
    """

    kspace: np.ndarray
    mask: np.ndarray
    target: np.ndarray | None
    max_value: float
    fname: str
    slice_idx: int
    anatomy: str
    acceleration: int
    boxes: tuple[Box, ...] = ()


class Sample(NamedTuple):
    """One model-ready slice; DataLoader's default collate stacks it into a batch of the same type.

    masked_kspace: (C, H, W, 2) float32, mask applied, (real, imaginary) in the last axis, stored units.
    mask: (1, 1, W, 1) float32.
    target: (384, 384) float32, or an empty (0,) tensor without a target.
    fg_mask: (384, 384) float32 leaderboard foreground mask of the target, or empty (0,).
    boxes: (MAX_BOXES, 4) int64 rows (x, y, width, height) of the lesion boxes the 2026 score uses (clipped,
        at least 7 pixels wide and high), zero rows unused; after a geometric augmentation all zero (use box_mask).
    box_mask: (384, 384) float32, 1 inside the scored boxes (warped with the image by augmentation), or (0,).
    """

    masked_kspace: torch.Tensor
    mask: torch.Tensor
    target: torch.Tensor
    fg_mask: torch.Tensor
    max_value: float
    fname: str
    slice_idx: int
    anatomy: str
    acceleration: int
    boxes: torch.Tensor = torch.zeros(0, 4, dtype=torch.int64)
    box_mask: torch.Tensor = torch.zeros(0)


# ``(kspace (C, H, W), mask (W,)) -> (N, H, W)``, e.g. :class:`utils.data.compression.CoilCompressor`
Compressor = Callable[[np.ndarray, np.ndarray], np.ndarray]


def box_tensors(boxes: tuple[Box, ...], has_target: bool, origin: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(boxes (MAX_BOXES, 4) int64, box_mask (384, 384) float32 or (0,) without a target) of the scored boxes, on
    the host whatever the default device (the harness makes samples between device calls)."""
    scored = scored_boxes(boxes, CHALLENGE_SHAPE)
    if len(scored) > MAX_BOXES:
        raise UserInputError(f"{origin}: {len(scored)} lesion boxes on one slice, more than the {MAX_BOXES} this repository reads")
    rows = torch.zeros(MAX_BOXES, 4, dtype=torch.int64, device="cpu")
    for row, box in enumerate(scored):
        rows[row] = torch.tensor([box.x, box.y, box.width, box.height], device="cpu")
    mask = torch.from_numpy(box_mask(scored, CHALLENGE_SHAPE).astype(np.float32)) if has_target else torch.zeros(0, device="cpu")
    return rows, mask


def to_sample(raw: RawSlice, mask: np.ndarray, compressor: Compressor | None = None, box_mask_override: np.ndarray | None = None) -> Sample:
    """Apply ``mask`` ((W,) float32) to ``raw.kspace``, compress the coils if asked, convert to tensors.

    ``box_mask_override``: the box mask of an augmented slice (the boxes themselves are then left out)."""
    mask = np.asarray(mask, dtype=np.float32)
    masked = raw.kspace * mask  # broadcasts along W
    if compressor is not None:
        masked = compressor(masked, mask)
    masked_kspace = torch.view_as_real(torch.from_numpy(np.ascontiguousarray(masked, dtype=np.complex64)))
    if raw.target is None:
        # a host tensor like the others, whatever the default device: recon_slice makes samples between device calls
        target = fg_mask = masked_kspace.new_zeros(0)
    else:
        target = torch.from_numpy(np.ascontiguousarray(raw.target, dtype=np.float32))
        fg_mask = torch.from_numpy(foreground_mask(raw.target, raw.anatomy))
    boxes, boxes_mask = box_tensors(raw.boxes if box_mask_override is None else (), raw.target is not None, f"{raw.fname} slice {raw.slice_idx}")
    if box_mask_override is not None:
        boxes_mask = torch.from_numpy(np.ascontiguousarray(box_mask_override, dtype=np.float32))
    return Sample(
        masked_kspace=masked_kspace,
        mask=torch.from_numpy(mask).view(1, 1, -1, 1),
        target=target,
        fg_mask=fg_mask,
        max_value=raw.max_value,
        fname=raw.fname,
        slice_idx=raw.slice_idx,
        anatomy=raw.anatomy,
        acceleration=raw.acceleration,
        boxes=boxes,
        box_mask=boxes_mask,
    )


class ApplyFileMask:
    """The default transform: the mask stored in the file, then the optional coil compression (validation and
    reconstruction)."""

    def __init__(self, compressor: Compressor | None = None):
        self.compressor = compressor

    def __call__(self, raw: RawSlice, rng: np.random.Generator | None = None) -> Sample:
        return to_sample(raw, raw.mask, self.compressor)
