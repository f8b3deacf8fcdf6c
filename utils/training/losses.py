"""Training losses inside the leaderboard foreground mask, with data_range = the volume max (SPEC §2, §5).

Every loss takes ``(output, target, fg_mask, max_value)``: images ``(B, 384, 384)``, the foreground mask
of the target from :func:`utils.metrics.foreground.foreground_mask` and ``(B,)`` volume maxima, and returns
a scalar averaged over the batch. SSIM is the one in :mod:`utils.metrics.ssim`, so a loss of 0 is a
leaderboard score of 1.
"""
from __future__ import annotations

import torch
from torch import nn

from utils.metrics.ssim import leaderboard_ssim_map

__all__ = ["MaskedSSIMLoss", "MaskedL1Loss", "MaskedSSIML1Loss"]


class MaskedSSIMLoss(nn.Module):
    """1 - the leaderboard SSIM of each slice (whole 378x378 map of the masked images), batch mean."""

    def forward(self, output: torch.Tensor, target: torch.Tensor, fg_mask: torch.Tensor, max_value: torch.Tensor) -> torch.Tensor:
        ssim = leaderboard_ssim_map(output, target, fg_mask, max_value).mean(dim=(-2, -1))
        return (1.0 - ssim).mean()


class MaskedL1Loss(nn.Module):
    """Mean |output - target| over the foreground pixels, in units of the volume max, batch mean."""

    def forward(self, output: torch.Tensor, target: torch.Tensor, fg_mask: torch.Tensor, max_value: torch.Tensor) -> torch.Tensor:
        error = ((output - target).abs() * fg_mask).sum(dim=(-2, -1))
        pixels = fg_mask.sum(dim=(-2, -1)).clamp_min(1.0)
        return (error / pixels / max_value.to(output.dtype)).mean()


class MaskedSSIML1Loss(nn.Module):
    """``ssim_weight * MaskedSSIMLoss + l1_weight * MaskedL1Loss``: the entry's loss."""

    def __init__(self, ssim_weight: float = 1.0, l1_weight: float = 1.0):
        super().__init__()
        self.ssim_weight, self.l1_weight = float(ssim_weight), float(l1_weight)
        self.ssim, self.l1 = MaskedSSIMLoss(), MaskedL1Loss()

    def forward(self, output: torch.Tensor, target: torch.Tensor, fg_mask: torch.Tensor, max_value: torch.Tensor) -> torch.Tensor:
        return self.ssim_weight * self.ssim(output, target, fg_mask, max_value) + self.l1_weight * self.l1(
            output, target, fg_mask, max_value
        )
