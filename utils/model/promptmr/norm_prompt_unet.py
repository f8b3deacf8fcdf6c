"""A PromptMR+ U-Net on complex images: one normalisation for all channels, zero padding to multiples of 8.

Complex channels ``(B, K, H, W, 2)`` become ``2K`` real channels, all real parts then all imaginary parts
(:func:`~utils.model.complex_layout.complex_to_channels`). Unlike fastMRI's NormUnet (per channel), the input
is normalised with ONE mean and ONE standard deviation per sample, over all ``2K * H * W`` values, and the
standard deviation is the unbiased one (N - 1), as in the 2025 entry. The image is then zero-padded to
multiples of 8 (the U-Net halves it three times), the odd pixel at the bottom / right
(:func:`~utils.model.unet.pad_to_multiple`, which pads an axis shorter than 16 up to 16; the entry pads it to
8: both only ever add zeros around images far smaller than the challenge's).

Precision: the statistics, the padding and the de-normalisation run in at least float32; only the U-Net
itself may run under autocast (:mod:`utils.model.precision`).
"""
from __future__ import annotations

import torch
from torch import nn

from utils.model.complex_layout import channels_to_complex, complex_to_channels
from utils.model.precision import at_least_float32, float32_region
from utils.model.promptmr.history import History
from utils.model.promptmr.prompt_unet import PromptUnet
from utils.model.unet import pad_to_multiple, unpad

__all__ = ["sample_mean_std", "NormPromptUnet"]

PAD_MULTIPLE = 8


def sample_mean_std(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased standard deviation of each sample of ``(B, C, H, W)`` over all its values, ``(B, 1, 1, 1)``.

    The entry has no eps; where a sample is constant (std 0, e.g. an all-zero input) this divides by 1
    instead of 0, so it agrees wherever the entry is finite.
    """
    values = x.flatten(1)
    mean, std = values.mean(dim=1), values.std(dim=1)  # two passes, as the entry (float32 rounds the same way)
    return mean.view(-1, 1, 1, 1), torch.where(std > 0, std, 1.0).view(-1, 1, 1, 1)


class NormPromptUnet(nn.Module):
    """Complex channels ``(B, K, H, W, 2)`` and a history -> ``(B, K_out, H, W, 2)`` and the next history."""

    def __init__(self, unet: PromptUnet):
        super().__init__()
        self.unet = unet

    def forward(self, image: torch.Tensor, history: History = None) -> tuple[torch.Tensor, History]:
        with float32_region(image):
            x = complex_to_channels(at_least_float32(image))
            mean, std = sample_mean_std(x)
            x, box = pad_to_multiple((x - mean) / std, PAD_MULTIPLE)
        x, history = self.unet(x, history)
        with float32_region(image):
            x = unpad(at_least_float32(x), box)
            return channels_to_complex(x * std + mean), history
