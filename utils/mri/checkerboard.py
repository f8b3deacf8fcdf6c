"""Centred FFTs of even-sized grids without shifts: checkerboard modulation.

For an even length N, ``fftshift`` and ``ifftshift`` are the same roll by N/2, and a roll by N/2 is a
modulation on the other side of the transform. In 2-D, with ``P = (-1)^(h + w)`` on the image grid and
``Q = (-1)^((H + W) / 2) * P`` on the k-space grid (both H and W even):

    fft2c(x) = Q * fft2(P * x)        ifft2c(k) = P * ifft2(Q * k)

where ``fft2``/``ifft2`` are the plain orthonormal transforms. A chain of coil operators can therefore keep
*modulated* k-space ``Q k`` and maps ``P S`` and use plain transforms throughout (no roll copies):

    sens_expand:  fft2((P S) x) = Q * fft2c(S x)
    sens_reduce:  sum_c conj(P S_c) ifft2(Q k_c) = sum_c conj(S_c) ifft2c(k_c)     (the true image)
    magnitude:    |ifft2(Q k)| = |ifft2c(k)|                                         (|P| = 1)

Column masks commute with ``Q``, so data consistency is unchanged. Multiplying by +-1 is exact; only the
FFT's own rounding differs from the shifted path (float32 rounding). Odd sizes keep the shifted path.
"""
from __future__ import annotations

import torch

__all__ = ["fft2", "ifft2", "image_checkerboard", "kspace_checkerboard", "shift_free"]

_SPATIAL = (-2, -1)


def shift_free(height: int, width: int) -> bool:
    """Whether a grid of this size can use the modulated frame (both sizes even)."""
    return height % 2 == 0 and width % 2 == 0


def image_checkerboard(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``P = (-1)^(h + w)`` as ``(H, W, 1)``, to multiply the real layout ``(..., H, W, 2)``."""
    rows = torch.arange(height, device=device)[:, None]
    columns = torch.arange(width, device=device)[None, :]
    return (1 - 2 * ((rows + columns) % 2)).to(dtype)[..., None]


def kspace_checkerboard(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``Q = (-1)^((H + W) / 2) * P`` as ``(H, W, 1)``; H and W even."""
    sign = -1 if ((height + width) // 2) % 2 else 1
    return sign * image_checkerboard(height, width, device, dtype)


def fft2(data: torch.Tensor) -> torch.Tensor:
    """Plain orthonormal 2-D FFT of a complex ``(..., H, W)``: ``fft2c`` in the modulated frame."""
    return torch.fft.fftn(data, dim=_SPATIAL, norm="ortho")


def ifft2(data: torch.Tensor) -> torch.Tensor:
    """Plain orthonormal 2-D inverse FFT of a complex ``(..., H, W)``: ``ifft2c`` in the modulated frame."""
    return torch.fft.ifftn(data, dim=_SPATIAL, norm="ortho")
