"""fastMRI's NormUnet: a U-Net on complex images, applied between per-channel normalisation and its inverse."""
from __future__ import annotations

import torch
from torch import nn

from utils.model.complex_layout import channels_to_complex, complex_to_channels
from utils.model.unet import Unet

__all__ = ["NORM_EPS", "channel_mean_std", "NormUnet"]

# variance floor of every per-channel normalisation; an all-zero channel (a silent coil, an ACS-only image of
# an empty mask) otherwise divides by zero, the NaN source fastMRI's NormUnet is known for
NORM_EPS = 1e-6


def channel_mean_std(x: torch.Tensor, eps: float = NORM_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and ``sqrt(var + eps)`` of ``(B, C, H, W)``, each ``(B, C, 1, 1)``.

    The biased variance keeps a 1x1 image finite; normalising per sample (not per batch) lets a batch of
    several slices give the same result as each slice alone.
    """
    var, mean = torch.var_mean(x, dim=(-2, -1), unbiased=False, keepdim=True)
    return mean, torch.sqrt(var + eps)


class NormUnet(nn.Module):
    """Complex image ``(B, 1, H, W, 2)`` -> normalise -> U-Net -> de-normalise -> ``(B, 1, H, W, 2)``."""

    def __init__(self, chans: int, num_pools: int):
        super().__init__()
        self.unet = Unet(in_chans=2, out_chans=2, chans=chans, num_pools=num_pools)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image: ``(B, 1, H, W, 2)`` float32 -> ``(B, 1, H, W, 2)`` float32 (the U-Net may run under autocast)."""
        x = complex_to_channels(image)
        mean, std = channel_mean_std(x)
        x = self.unet((x - mean) / std).float()
        return channels_to_complex(x * std + mean)
