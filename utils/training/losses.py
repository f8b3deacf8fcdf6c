"""Training losses inside the leaderboard foreground mask, with data_range = the volume max (SPEC §2, §5).

Every loss takes ``(output, target, fg_mask, max_value)``: images ``(B, 384, 384)``, the foreground mask
of the target from :func:`utils.metrics.foreground.foreground_mask` and ``(B,)`` volume maxima, and returns
a scalar averaged over the batch. SSIM is the one in :mod:`utils.metrics.ssim`, so a loss of 0 is a
leaderboard score of 1.

The L1 term is the entry's (``SSIML1Loss(mask_only=True)``, golden test in ``tests/test_reference_equality.py``):
``mean over all 384x384 pixels of |output * mask - target * mask| / max``. ``l1_normalisation="foreground"``
divides by the number of foreground pixels instead (this repository's earlier choice), which weighs L1 more
where the foreground is small (knee).
"""
from __future__ import annotations

import torch
from torch import nn

from utils.metrics.ssim import leaderboard_ssim_map

__all__ = ["L1_NORMALISATIONS", "MaskedSSIMLoss", "MaskedL1Loss", "MaskedSSIML1Loss"]

L1_NORMALISATIONS = ("all_pixels", "foreground")


class MaskedSSIMLoss(nn.Module):
    """1 - the leaderboard SSIM of each slice (whole 378x378 map of the masked images), batch mean."""

    def forward(self, output: torch.Tensor, target: torch.Tensor, fg_mask: torch.Tensor, max_value: torch.Tensor) -> torch.Tensor:
        ssim = leaderboard_ssim_map(output, target, fg_mask, max_value).mean(dim=(-2, -1))
        return (1.0 - ssim).mean()


class MaskedL1Loss(nn.Module):
    """Mean |output - target| of the masked images in units of the volume max, batch mean.

    ``normalisation``: ``"all_pixels"`` averages over the whole image (the entry), ``"foreground"`` over the
    foreground pixels only.
    """

    def __init__(self, normalisation: str = "all_pixels"):
        super().__init__()
        if normalisation not in L1_NORMALISATIONS:
            raise ValueError(f"l1_normalisation must be one of {list(L1_NORMALISATIONS)}, got {normalisation!r}")
        self.normalisation = normalisation

    def forward(self, output: torch.Tensor, target: torch.Tensor, fg_mask: torch.Tensor, max_value: torch.Tensor) -> torch.Tensor:
        error = (output * fg_mask - target * fg_mask).abs().sum(dim=(-2, -1))
        if self.normalisation == "all_pixels":
            pixels = torch.full_like(error, fg_mask.shape[-2] * fg_mask.shape[-1])
        else:
            pixels = fg_mask.sum(dim=(-2, -1)).clamp_min(1.0)
        return (error / pixels / max_value.to(output.dtype)).mean()


class MaskedSSIML1Loss(nn.Module):
    """``ssim_weight * MaskedSSIMLoss + l1_weight * MaskedL1Loss``: the entry's loss."""

    def __init__(self, ssim_weight: float = 1.0, l1_weight: float = 1.0, l1_normalisation: str = "all_pixels"):
        super().__init__()
        self.ssim_weight, self.l1_weight = float(ssim_weight), float(l1_weight)
        self.ssim, self.l1 = MaskedSSIMLoss(), MaskedL1Loss(l1_normalisation)

    def forward(self, output: torch.Tensor, target: torch.Tensor, fg_mask: torch.Tensor, max_value: torch.Tensor) -> torch.Tensor:
        return self.ssim_weight * self.ssim(output, target, fg_mask, max_value) + self.l1_weight * self.l1(
            output, target, fg_mask, max_value
        )
