"""``SSIMLoss`` with the interface and the numbers of the challenge baseline's ``utils/common/loss_function.py``.

The 2026 organisers' ``utils/common/metrics.py`` subclasses it and uses its attributes ``w`` (the 7x7 uniform
window, a float32 buffer ``(1, 1, 7, 7)``), ``k1``, ``k2``, ``cov_norm`` (the sample-covariance factor 49 / 48)
and ``win_size``, calling ``F.conv2d(X, self.w)``. Its own ``forward`` is this repository's SSIM
(:func:`utils.metrics.ssim.ssim_map`, the same formula with the same constants): ``1 - mean SSIM`` over the
batch and the valid map.
"""
from __future__ import annotations

import torch
from torch import nn

from utils.metrics.ssim import ssim_map

__all__ = ["SSIMLoss"]


class SSIMLoss(nn.Module):
    """``1 - SSIM`` of ``X`` against ``Y`` (both ``(B, H, W)``) with ``data_range`` ``(B,)``: the baseline's loss."""

    def __init__(self, win_size: int = 7, k1: float = 0.01, k2: float = 0.03):
        super().__init__()
        self.win_size = win_size
        self.k1, self.k2 = k1, k2
        self.register_buffer("w", torch.ones(1, 1, win_size, win_size) / win_size**2)
        num_pixels = win_size**2
        self.cov_norm = num_pixels / (num_pixels - 1)

    def forward(self, X: torch.Tensor, Y: torch.Tensor, data_range: torch.Tensor) -> torch.Tensor:  # noqa: N803 - the baseline's names
        return 1 - ssim_map(X, Y, data_range, self.win_size).mean()
