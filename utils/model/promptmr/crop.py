"""The 2025 entry's crop to 384 x 384, which places an odd-sized narrower image one pixel differently.

The entry zero-pads a narrower axis with ``(384 - n) // 2`` zeros before it and crops a wider one from
``(n - 384) // 2``. :func:`utils.mri.crop.center_crop_or_pad` maps pixel ``n // 2`` onto ``384 // 2`` instead
(the centred-FFT convention), which is the same offset for every even size and for cropping, but pads an odd
narrower axis with one more zero before it. PromptMR+ uses the entry's offsets, so that it reproduces the
entry's output pixel for pixel.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["entry_crop_or_pad"]


def _pad_before_after(size: int, target: int) -> tuple[int, int]:
    missing = max(target - size, 0)
    return missing // 2, missing - missing // 2


def entry_crop_or_pad(image: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """``(..., H, W)`` -> ``(..., *shape)``: per axis, ``(t - n) // 2`` zeros before and the rest after where
    ``n < t``, or the ``t`` values from ``(n - t) // 2`` on where ``n > t``."""
    (top, bottom), (left, right) = (_pad_before_after(n, t) for n, t in zip(image.shape[-2:], shape))
    if top or bottom or left or right:
        image = F.pad(image, (left, right, top, bottom))
    height, width = image.shape[-2:]
    row, col = (height - shape[0]) // 2, (width - shape[1]) // 2
    return image[..., row : row + shape[0], col : col + shape[1]]
