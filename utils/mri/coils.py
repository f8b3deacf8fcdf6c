"""Complex arithmetic on the real ``(..., 2)`` layout, root-sum-of-squares and the SENSE coil operators.

The model keeps complex data as real tensors whose last axis holds (real, imaginary). |z|, sqrt and RSS have
an infinite derivative at exactly zero, and knee k-space has zero-padded outer columns (SPEC §6). Every
magnitude here goes through :func:`safe_sqrt`: the same value as ``torch.sqrt`` everywhere (so the model stays
equal to fastMRI's, which has no eps), and a gradient of 0 instead of inf/NaN at exact zeros.
"""
from __future__ import annotations

import torch

from utils.mri.checkerboard import fft2, ifft2
from utils.mri.fft import fft2c, ifft2c

__all__ = [
    "safe_sqrt",
    "complex_abs",
    "rss",
    "rss_complex",
    "sens_expand",
    "sens_reduce",
]


def safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(x)`` for ``x >= 0``, with gradient 0 (not inf) where ``x == 0``."""
    positive = x > 0
    # sqrt of the safe branch only: torch.where would otherwise send 0 * inf = NaN back through sqrt(0)
    return torch.where(positive, torch.sqrt(torch.where(positive, x, 1.0)), 0.0)


def complex_abs(x: torch.Tensor) -> torch.Tensor:
    """Magnitude ``sqrt(re^2 + im^2)`` of a real-layout tensor ``(..., 2)`` -> ``(...)``."""
    return safe_sqrt((x**2).sum(dim=-1))


def rss(data: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Root-sum-of-squares over the coil axis ``dim``; real or complex input, real output."""
    power = data.abs() ** 2 if data.is_complex() else data**2
    return safe_sqrt(power.sum(dim=dim))


def rss_complex(data: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Root-sum-of-squares of a real-layout complex tensor ``(..., 2)`` over ``dim`` (counted without the last axis)."""
    # the complex axis is summed away first, so ``dim`` (negative ones included) indexes the reduced tensor
    return safe_sqrt((data**2).sum(dim=-1).sum(dim=dim))


def _complex_view(x: torch.Tensor) -> torch.Tensor:
    """Real layout ``(..., 2)`` -> complex ``(...)`` in float32 (float64 stays), sharing memory where ``x`` is contiguous."""
    return torch.view_as_complex(x.to(torch.promote_types(x.dtype, torch.float32)).contiguous())


# The coil operators multiply in complex dtype: one fused pass where a real-layout complex product takes four
# products, two sums and a stack, and the FFT is handed a complex tensor without another copy.
# ``centred=False``: k-space and maps are in the checkerboard-modulated frame (utils.mri.checkerboard), where
# the plain FFTs compute the centred ones without the shifts' copies.
def sens_expand(image: torch.Tensor, sens_maps: torch.Tensor, centred: bool = True) -> torch.Tensor:
    """Coil k-space ``F(S_c x)``: image ``(B, 1, H, W, 2)``, sens_maps ``(B, C, H, W, 2)`` -> ``(B, C, H, W, 2)``."""
    transform = fft2c if centred else fft2
    return torch.view_as_real(transform(_complex_view(image) * _complex_view(sens_maps)))


def sens_reduce(kspace: torch.Tensor, sens_maps: torch.Tensor, centred: bool = True) -> torch.Tensor:
    """SENSE combination ``sum_c conj(S_c) F^-1(k_c)``: ``(B, C, H, W, 2)`` -> ``(B, 1, H, W, 2)``."""
    coil_images = (ifft2c if centred else ifft2)(_complex_view(kspace))
    conj_maps = _complex_view(sens_maps).conj()
    # without autograd the product goes into the transform's output, a fresh coil-sized tensor: one fewer of them
    products = coil_images.mul_(conj_maps) if not torch.is_grad_enabled() else coil_images * conj_maps
    return torch.view_as_real(products.sum(dim=1, keepdim=True))
