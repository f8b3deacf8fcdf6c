"""Centred, orthonormal 2-D FFTs in the fastMRI convention.

k-space is stored with DC at the centre of the last two axes (index ``N // 2``), so every transform is
``fftshift(fft(ifftshift(x)))`` with ``norm="ortho"``: the transform is unitary, noise keeps its standard
deviation, and ``ifft2c(fft2c(x)) == x`` up to rounding.

Both functions accept either
- a complex tensor ``(..., H, W)``: transformed over its last two axes, dtype kept, or
- a real tensor ``(..., H, W, 2)`` holding real and imaginary parts (the layout of the model): transformed
  over axes ``(-3, -2)`` and returned in the same layout.

The real layout is always computed in float32. cuFFT has no half-precision support for the non-power-of-two
sizes of this challenge (320..480, 640, 768) and torch.fft has no bfloat16, so under autocast the FFT must
stay in float32 whatever dtype a network handed it.
"""
from __future__ import annotations

import torch

__all__ = ["fft2c", "ifft2c"]

_SPATIAL = (-2, -1)


def _centred(transform, data: torch.Tensor) -> torch.Tensor:
    data = torch.fft.ifftshift(data, dim=_SPATIAL)
    data = transform(data, dim=_SPATIAL, norm="ortho")
    return torch.fft.fftshift(data, dim=_SPATIAL)


def _apply(transform, data: torch.Tensor) -> torch.Tensor:
    if data.is_complex():
        return _centred(transform, data)
    if data.shape[-1] != 2:
        raise ValueError(f"expected a complex tensor or a real tensor with a last axis of 2, got {tuple(data.shape)}")
    complex_data = torch.view_as_complex(data.to(torch.promote_types(data.dtype, torch.float32)).contiguous())
    return torch.view_as_real(_centred(transform, complex_data))


def fft2c(data: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D FFT: image ``(..., H, W)`` complex or ``(..., H, W, 2)`` real -> k-space, same layout."""
    return _apply(torch.fft.fftn, data)


def ifft2c(data: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D inverse FFT: k-space ``(..., H, W)`` complex or ``(..., H, W, 2)`` real -> image."""
    return _apply(torch.fft.ifftn, data)
