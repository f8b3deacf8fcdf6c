"""Centre crop to the challenge grid, zero-padding axes that are narrower than the target.

Images are (..., H, W). The centre convention matches the centred FFT: input index ``n // 2`` lands on
output index ``size // 2``. For even sizes this is the usual ``(n - size) // 2`` offset of fastMRI's
``center_crop``; it also keeps the centre where an odd width is padded (knee W = 320 < 384 is padded).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:  # torch-free at import: the CPU scorer (and the annotations it reads) never loads torch
    import torch

__all__ = ["CHALLENGE_SHAPE", "center_shift", "center_crop_or_pad"]

CHALLENGE_SHAPE = (384, 384)

Array = TypeVar("Array", np.ndarray, "torch.Tensor")


def center_shift(in_size: int, out_size: int) -> int:
    """Where :func:`center_crop_or_pad` puts input index ``i`` along one axis: output index ``i + shift``.

    ``shift = out_size // 2 - in_size // 2``: > 0 pads, < 0 crops (e.g. -192 for H = 768 -> 384).
    """
    return out_size // 2 - in_size // 2


def _spans(in_size: int, out_size: int) -> tuple[slice, slice]:
    """Source and destination slices along one axis, centre on centre."""
    shift = center_shift(in_size, out_size)
    src_start = max(0, -shift)
    dst_start = max(0, shift)
    length = min(in_size - src_start, out_size - dst_start)
    return slice(src_start, src_start + length), slice(dst_start, dst_start + length)


def center_crop_or_pad(data: Array, shape: tuple[int, int] = CHALLENGE_SHAPE) -> Array:
    """Crop (or zero-pad) the last two axes of ``data`` to ``shape`` about the centre; numpy or torch, any dtype.

    Returns ``data`` itself (not a copy) when it already has ``shape``.
    """
    (src_h, dst_h), (src_w, dst_w) = (_spans(n, s) for n, s in zip(data.shape[-2:], shape))
    if tuple(data.shape[-2:]) == tuple(shape):
        return data
    if isinstance(data, np.ndarray):
        out = np.zeros((*data.shape[:-2], *shape), dtype=data.dtype)
    else:  # a torch tensor
        out = data.new_zeros((*data.shape[:-2], *shape))
    out[..., dst_h, dst_w] = data[..., src_h, src_w]
    return out
