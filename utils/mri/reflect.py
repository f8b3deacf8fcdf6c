"""Left-right reflection of the coil images (the W axis), done on centred k-space: the geometry of flip
test-time augmentation (:mod:`utils.inference.tta`).

Signed coordinates: column ``n`` of a centred axis of size ``W`` (:mod:`utils.mri.fft`, DC at ``W // 2``) is
``r = n - W // 2`` in the image and ``k = n - W // 2`` in k-space, both modulo ``W``, and
``X(k) = W**-0.5 * sum_r x(r) exp(-2 pi i k r / W)``. For integers ``a`` and ``p``, substituting ``s = p - r``:

    y(r) = exp(2 pi i a r / W) x(p - r)   <=>   Y(k) = exp(2 pi i (a - k) p / W) X(a - k)

(no conjugation: coil images are complex; ``conj`` would appear only for a real image). ``p`` is the image's
mirror point and ``a`` the k-space one.

- ``p``: the reflected coil images are the plain array flip ``torch.flip(x, -1)`` (column ``i -> W - 1 - i``,
  MRAugment's ``flip_h``): ``p = -1`` for even ``W``, ``0`` for odd. That flip maps every centred crop or
  zero-pad of an even axis onto itself, so the reflected output maps back onto the 384 x 384 grid pixel for
  pixel (:func:`reflected_columns`; for even ``W`` it is the flip ``j -> 383 - j``).
- ``a = 0``: no phase ramp on the coil images, so they are exactly the flipped images a network saw in
  training. Then ``Y(k) = exp(-2 pi i k p / W) X(-k)``: the k-space columns, and the mask's with them, are
  mirrored about DC (``n -> (W - n) mod W``: for even ``W`` flip then roll by one, the Nyquist column 0 stays;
  for odd ``W`` a plain flip), and for even ``W`` multiplied by ``exp(2 pi i k / W)`` (the half-pixel shift
  from mirroring about column ``W // 2`` to mirroring about the middle of the array).

What it does not keep: fastMRI's symmetric ACS block (:mod:`utils.mri.acs`, ``2 m`` lines from ``W / 2 - m``)
is mirrored about ``k = -1/2``, not DC, so the reflected mask calibrates the sensitivity maps on a block one
line off, and a VarNet is not exactly reflection-equivariant even at initialisation (with ``acs_lines:
contiguous`` it is). Keeping that block too needs ``a = -1`` (a plain flip of the k-space, no phase), which
puts one turn of linear phase ``exp(-2 pi i r / W)`` on every coil image; on a small trained FeatureVarNet
that scored lower on every tiny-preset slice (docs/model.md, "Test-time augmentation").
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable

import torch

from utils.mri.crop import center_crop_or_pad

__all__ = ["reflect_kspace", "reflect_mask", "reflected_columns"]

Crop = Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]  # (..., H, W) -> (..., *shape), e.g. center_crop_or_pad


def _reflection_phase(width: int, device: torch.device) -> torch.Tensor:
    """``(W,)`` complex64: ``exp(2 pi i k / W)`` with ``k = n - W // 2`` for even ``W``; ones for odd."""
    if width % 2:
        return torch.ones(width, dtype=torch.complex64, device=device)
    k = torch.arange(width, dtype=torch.float64) - width // 2
    return torch.polar(torch.ones(width, dtype=torch.float64), 2 * math.pi * k / width).to(torch.complex64).to(device)


def _mirror_about_dc(data: torch.Tensor) -> torch.Tensor:
    """Axis -2 (W) mirrored about column ``W // 2``: column ``n`` takes column ``(2 (W // 2) - n) mod W``."""
    return data.flip(-2).roll(1, dims=-2) if data.shape[-2] % 2 == 0 else data.flip(-2)


def reflect_kspace(kspace: torch.Tensor) -> torch.Tensor:
    """Centred k-space ``(..., H, W, 2)`` (real, imaginary last) of coil images ``x`` -> that of
    ``torch.flip(x, -1)``, same layout, in float32 (or the input's wider dtype)."""
    dtype = torch.promote_types(kspace.dtype, torch.float32)
    mirrored = torch.view_as_complex(_mirror_about_dc(kspace.to(dtype)).contiguous())
    return torch.view_as_real(mirrored * _reflection_phase(kspace.shape[-2], kspace.device).to(mirrored.dtype))


def reflect_mask(mask: torch.Tensor) -> torch.Tensor:
    """Mask ``(..., W, 1)`` (the model's ``(B, 1, 1, W, 1)``) reflected with :func:`reflect_kspace`."""
    return _mirror_about_dc(mask)


@lru_cache(maxsize=64)
def _columns(width: int, out_width: int, crop: Crop) -> tuple[torch.Tensor, torch.Tensor]:
    numbers = torch.arange(1, width + 1, dtype=torch.float64).view(1, width)  # 1-based: a padded column reads 0
    source = crop(numbers, (1, out_width))[0].round().long() - 1  # native column shown in each output column, or -1
    column_of = torch.full((width,), -1, dtype=torch.long)
    shown = source >= 0
    column_of[source[shown]] = torch.arange(out_width)[shown]
    partner = torch.where(shown, column_of[(width - 1 - source).clamp(0, width - 1)], -1)
    both = partner >= 0
    return torch.where(both, partner, torch.arange(out_width)), both


def reflected_columns(width: int, out_width: int, crop: Crop = center_crop_or_pad) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each output column of a native-width-``W`` image sits in the output of its reflection.

    ``crop`` is the model's crop / zero-pad of ``(..., H, W)`` to ``(..., H', out_width)``. Returns ``(index,
    both)``, each ``(out_width,)``: output column ``j`` shows native column ``i``; the reflected image shows
    ``i`` at native column ``W - 1 - i``, which lands on output column ``index[j]`` where ``both[j]``. ``both``
    is False on padded columns and where the partner was cropped away (only column 0 for an odd ``W > 384``);
    ``index[j] = j`` there. For even ``W`` the index is the plain flip ``383 - j`` wherever a pixel is shown.
    """
    return _columns(width, out_width, crop)
