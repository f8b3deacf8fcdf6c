"""Test-time augmentation: average a network's reconstruction with its reconstruction of the reflected input.

``tta: flip`` (``reconstruct_from_ckpt.py --tta flip``, or ``tta: flip`` in an expert manifest) runs the network
twice per slice, on the measured k-space and on the k-space of the left-right reflected coil images
(:mod:`utils.mri.reflect`: the exact reflection in the centred-FFT convention, the mask reflected with it),
reflects the second output back onto the 384 x 384 grid and averages the two pixel by pixel. A network that is
itself reflection-equivariant gives its plain output back. Both passes run inside one call of the wrapped
network, so :class:`~utils.inference.reconstruct.ModelClock` times them together as the slice's model time.
The passes run one after the other (not as a batch of 2), so the memory is that of one pass.
"""
from __future__ import annotations

import torch
from torch import nn

from utils.errors import UserInputError
from utils.mri.crop import center_crop_or_pad
from utils.mri.reflect import reflect_kspace, reflect_mask, reflected_columns

__all__ = ["TTA_MODES", "FlipTTA", "check_tta", "unreflect", "with_tta"]

TTA_MODES = ("none", "flip")


def check_tta(mode: object, where: str = "--tta") -> str:
    """``mode`` if it is one of :data:`TTA_MODES`; else a one-line UserInputError naming ``where``."""
    if mode not in TTA_MODES:
        raise UserInputError(f"{where} {mode!r} is not a test-time augmentation; choose {' or '.join(TTA_MODES)}")
    return mode


def unreflect(reflected_output: torch.Tensor, plain_output: torch.Tensor, width: int, crop=center_crop_or_pad) -> torch.Tensor:
    """The mean of ``plain_output`` and ``reflected_output`` mapped back, both ``(B, H', W')``; a column whose
    partner the crop removed (or that is padding) keeps the plain value. ``width``: the input's native W."""
    index, both = reflected_columns(width, plain_output.shape[-1], crop)
    back = reflected_output.index_select(-1, index.to(reflected_output.device))
    return torch.where(both.to(plain_output.device), (plain_output + back) / 2, plain_output)


class FlipTTA(nn.Module):
    """``network`` with flip test-time augmentation: masked k-space ``(B, C, H, W, 2)``, mask ``(B, 1, 1, W, 1)``
    -> ``(B, 384, 384)``, the mean of the plain and the reflected-and-back outputs.

    The output crop is the network's ``output_crop`` (PromptMR+ has the 2025 entry's), else
    :func:`~utils.mri.crop.center_crop_or_pad`.
    """

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, masked_kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        plain = self.network(masked_kspace, mask)
        reflected = self.network(reflect_kspace(masked_kspace).to(masked_kspace.dtype), reflect_mask(mask))
        crop = getattr(self.network, "output_crop", center_crop_or_pad)
        return unreflect(reflected, plain, masked_kspace.shape[-2], crop)


def with_tta(network: nn.Module, mode: str) -> nn.Module:
    """``network`` wrapped for test-time augmentation ``mode`` (``none``: itself)."""
    return FlipTTA(network) if check_tta(mode) == "flip" else network
