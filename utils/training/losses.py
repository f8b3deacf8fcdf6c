"""Training losses inside the leaderboard foreground mask, with data_range = the volume max (SPEC §2, §5).

Every loss takes ``(output, target, fg_mask, max_value, box_mask=None)``: images ``(B, 384, 384)``, the foreground
mask of the target from :func:`utils.metrics.foreground.foreground_mask`, ``(B,)`` volume maxima and the lesion-box
masks of the slices (:class:`utils.data.transforms.Sample`), and returns a scalar. Each loss is computed per slice
and averaged over the batch. SSIM is the one in :mod:`utils.metrics.ssim`, so a loss of 0 is a leaderboard score of 1.

The L1 term is the entry's (``SSIML1Loss(mask_only=True)``, golden test in ``tests/test_reference_equality.py``):
``mean over all 384x384 pixels of |output * mask - target * mask| / max``. ``l1_normalisation="foreground"``
divides by the number of foreground pixels instead (this repository's earlier choice), which weighs L1 more
where the foreground is small (knee).

Options of every loss:

- ``bbox_weight`` (default 0): adds ``bbox_weight x (1 - SSIM inside the lesion boxes)``, the SSIM map of the
  unmasked images (as the 2026 SSIM_bbox scores boxes) averaged over the box pixels of each slice that has boxes,
  then over those slices. SSIM_bbox is half the 2026 score, and train/val boxes may be used in training.
- ``area_weight`` (default ``"none"``): ``"sqrt"`` multiplies each slice's loss by the square root of its
  foreground fraction (the share of the 384x384 target inside ``fg_mask``, so a weight in [0, 1]), so slices with
  little anatomy (the ends of a volume) count less; the 2025 winner's choice (+0.0008 reported). The weights are
  not normalised per batch, so they act with one slice per batch too (the entry's batch 1): across steps, where
  Adam-family optimizers are invariant to a constant factor of the loss.
"""
from __future__ import annotations

import torch
from torch import nn

from utils.metrics.ssim import leaderboard_ssim_map, masked_mean, ssim_map

__all__ = ["L1_NORMALISATIONS", "AREA_WEIGHTS", "SliceLoss", "area_weights", "MaskedSSIMLoss", "MaskedL1Loss", "MaskedSSIML1Loss",
           "box_ssim_loss"]

L1_NORMALISATIONS = ("all_pixels", "foreground")
AREA_WEIGHTS = ("none", "sqrt")


def area_weights(fg_mask: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` foreground masks -> ``(B,)`` weights sqrt(foreground fraction), each in [0, 1]."""
    return fg_mask.flatten(1).float().mean(dim=1).sqrt()


def box_ssim_loss(output: torch.Tensor, target: torch.Tensor, max_value: torch.Tensor, box_mask: torch.Tensor) -> torch.Tensor:
    """``1 - SSIM`` inside the boxes, averaged over the slices that have boxes; 0 where none has."""
    with_boxes = box_mask.flatten(1).any(dim=1)
    if not bool(with_boxes.any()):
        return output.new_zeros(())
    values = masked_mean(ssim_map(output[with_boxes], target[with_boxes], max_value[with_boxes]), box_mask[with_boxes])
    return (1.0 - values).mean()


class SliceLoss(nn.Module):
    """A loss per slice (:meth:`per_slice`, ``(B,)``), averaged over the batch, plus the lesion-box term."""

    def __init__(self, bbox_weight: float = 0.0, area_weight: str = "none"):
        super().__init__()
        if isinstance(bbox_weight, bool) or not isinstance(bbox_weight, (int, float)) or not 0.0 <= bbox_weight < float("inf"):
            raise ValueError(f"bbox_weight must be a number >= 0, got {bbox_weight!r}")
        if area_weight not in AREA_WEIGHTS:
            raise ValueError(f"area_weight must be one of {list(AREA_WEIGHTS)}, got {area_weight!r}")
        self.bbox_weight, self.area_weight = float(bbox_weight), area_weight

    def per_slice(self, output: torch.Tensor, target: torch.Tensor, fg_mask: torch.Tensor, max_value: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, output: torch.Tensor, target: torch.Tensor, fg_mask: torch.Tensor, max_value: torch.Tensor,
                box_mask: torch.Tensor | None = None) -> torch.Tensor:
        per_slice = self.per_slice(output, target, fg_mask, max_value)
        if self.area_weight == "sqrt":
            per_slice = per_slice * area_weights(fg_mask).to(per_slice.dtype)
        loss = per_slice.mean()
        if self.bbox_weight and box_mask is not None and box_mask.numel():
            loss = loss + self.bbox_weight * box_ssim_loss(output, target, max_value, box_mask)
        return loss


class MaskedSSIMLoss(SliceLoss):
    """1 - the leaderboard SSIM of each slice (whole 378x378 map of the masked images)."""

    def per_slice(self, output: torch.Tensor, target: torch.Tensor, fg_mask: torch.Tensor, max_value: torch.Tensor) -> torch.Tensor:
        return 1.0 - leaderboard_ssim_map(output, target, fg_mask, max_value).mean(dim=(-2, -1))


class MaskedL1Loss(SliceLoss):
    """Mean |output - target| of the masked images in units of the volume max.

    ``normalisation``: ``"all_pixels"`` averages over the whole image (the entry), ``"foreground"`` over the
    foreground pixels only.
    """

    def __init__(self, normalisation: str = "all_pixels", bbox_weight: float = 0.0, area_weight: str = "none"):
        super().__init__(bbox_weight, area_weight)
        if normalisation not in L1_NORMALISATIONS:
            raise ValueError(f"l1_normalisation must be one of {list(L1_NORMALISATIONS)}, got {normalisation!r}")
        self.normalisation = normalisation

    def per_slice(self, output: torch.Tensor, target: torch.Tensor, fg_mask: torch.Tensor, max_value: torch.Tensor) -> torch.Tensor:
        error = (output * fg_mask - target * fg_mask).abs().sum(dim=(-2, -1))
        if self.normalisation == "all_pixels":
            pixels = torch.full_like(error, fg_mask.shape[-2] * fg_mask.shape[-1])
        else:
            pixels = fg_mask.sum(dim=(-2, -1)).clamp_min(1.0)
        return error / pixels / max_value.to(output.dtype)


class MaskedSSIML1Loss(SliceLoss):
    """``ssim_weight * MaskedSSIMLoss + l1_weight * MaskedL1Loss``: the entry's loss."""

    def __init__(self, ssim_weight: float = 1.0, l1_weight: float = 1.0, l1_normalisation: str = "all_pixels", bbox_weight: float = 0.0,
                 area_weight: str = "none"):
        super().__init__(bbox_weight, area_weight)
        self.ssim_weight, self.l1_weight = float(ssim_weight), float(l1_weight)
        self.ssim, self.l1 = MaskedSSIMLoss(), MaskedL1Loss(l1_normalisation)

    def per_slice(self, output: torch.Tensor, target: torch.Tensor, fg_mask: torch.Tensor, max_value: torch.Tensor) -> torch.Tensor:
        return self.ssim_weight * self.ssim.per_slice(output, target, fg_mask, max_value) + self.l1_weight * self.l1.per_slice(
            output, target, fg_mask, max_value
        )
