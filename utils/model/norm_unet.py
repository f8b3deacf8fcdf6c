"""fastMRI's NormUnet: a U-Net on complex images, applied between per-channel normalisation and its inverse."""
from __future__ import annotations

import torch
from torch import nn

from utils.model.complex_layout import channels_to_complex, complex_to_channels
from utils.model.precision import at_least_float32
from utils.model.unet import Unet

__all__ = ["channel_mean_std", "NormUnet"]


def channel_mean_std(x: torch.Tensor, unbiased: bool, eps: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and standard deviation of ``(B, C, H, W)``, each ``(B, C, 1, 1)``.

    With ``eps == 0`` (the references): ``std`` is the plain (unbiased or biased) standard deviation wherever
    it is > 0, and 1 for a constant channel (a silent coil, the ACS image of an empty mask), where the
    references divide by zero: equal to them wherever they are finite, and scale-free, so the output does
    not depend on ``kspace_mult_factor``. With ``eps > 0``: ``sqrt(biased var + eps)``, this repository's
    earlier choice (model option ``norm_eps``). Normalising per sample (not per batch) lets a batch of
    several slices give the same result as each slice alone.
    """
    if eps > 0:
        var, mean = torch.var_mean(x, dim=(-2, -1), unbiased=False, keepdim=True)
        return mean, torch.sqrt(var + eps)
    var, mean = torch.var_mean(x, dim=(-2, -1), unbiased=unbiased, keepdim=True)
    return mean, torch.sqrt(torch.where(var > 0, var, 1.0))


def _channels(image: torch.Tensor) -> torch.Tensor:
    """:func:`complex_to_channels` of ``(B, 1, H, W, 2)``; on the CPU the channels-last view of the same memory.

    The general reshape gives a batch of one the batch stride 2, and with it PyTorch (``suggest_memory_format``)
    takes the tensor for channels-first: every image cascade's U-Net ran channels-first at batch 1. The
    permuted view has the strides of a channels-last tensor at every batch size, and costs no copy.
    """
    if image.device.type == "cpu" and image.shape[1] == 1:
        return image[:, 0].permute(0, 3, 1, 2)
    return complex_to_channels(image)


class NormUnet(nn.Module):
    """Complex image ``(B, 1, H, W, 2)`` -> normalise -> U-Net -> de-normalise -> ``(B, 1, H, W, 2)``.

    fastMRI normalises with the unbiased standard deviation and zero-pads about the centre to a multiple of
    ``2 ** num_pools``; ``norm_eps`` > 0 switches to a biased variance plus that eps (see
    :func:`channel_mean_std`).
    """

    def __init__(self, chans: int, num_pools: int, norm_eps: float = 0.0):
        super().__init__()
        self.unet = Unet(in_chans=2, out_chans=2, chans=chans, num_pools=num_pools)
        self.norm_eps = norm_eps

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image: ``(B, 1, H, W, 2)`` float32 -> ``(B, 1, H, W, 2)`` float32 (the U-Net may run under autocast)."""
        x = _channels(image)
        mean, std = channel_mean_std(x, unbiased=True, eps=self.norm_eps)
        x = (x - mean) / std
        if x.device.type == "cpu":
            # oneDNN's CPU convolutions are ~2x faster channels-last at 18-36 channels (benchmarks/varnet_step.py);
            # on GPUs channels-first was not measured against it, so it stays there
            x = x.contiguous(memory_format=torch.channels_last)
        x = at_least_float32(self.unet(x))
        return channels_to_complex(x * std + mean)
