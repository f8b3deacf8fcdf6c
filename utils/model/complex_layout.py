"""Moving the complex axis between the model's two layouts.

Coil operators and FFTs keep complex data as ``(B, C, H, W, 2)`` (real, imaginary last); convolutions want
real and imaginary parts as channels, ``(B, 2C, H, W)``. The channel order is all real parts, then all
imaginary parts, as in fastMRI's NormUnet.
"""
from __future__ import annotations

import torch

__all__ = ["complex_to_channels", "channels_to_complex"]


def complex_to_channels(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W, 2)`` -> ``(B, 2C, H, W)``: real parts of every channel, then imaginary parts."""
    batch, chans, height, width, two = x.shape
    if two != 2:
        raise ValueError(f"expected a last axis of 2 (real, imaginary), got {tuple(x.shape)}")
    return x.permute(0, 4, 1, 2, 3).reshape(batch, 2 * chans, height, width)


def channels_to_complex(x: torch.Tensor) -> torch.Tensor:
    """``(B, 2C, H, W)`` -> ``(B, C, H, W, 2)``; the inverse of :func:`complex_to_channels`."""
    batch, two_chans, height, width = x.shape
    if two_chans % 2:
        raise ValueError(f"expected an even number of channels (real, imaginary), got {two_chans}")
    return x.view(batch, 2, two_chans // 2, height, width).permute(0, 2, 3, 4, 1).contiguous()
