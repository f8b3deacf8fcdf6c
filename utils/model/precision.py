"""Where mixed precision is allowed: only inside the U-Nets.

cuFFT has no half precision for the non-power-of-two sizes of this challenge, torch.fft has no bfloat16, and
k-space scaled by 1e6 overflows float16 (max 65504), so FFTs, data consistency, the feature encoder/decoder
and everything on the scaled k-space run in float32 (SPEC §6). Under ``torch.autocast`` only convolutions
change dtype, so the rule reduces to two habits: the few convolutions outside the U-Nets run in
:func:`float32_region`, and every U-Net output is cast back with :func:`at_least_float32` before it meets k-space.
"""
from __future__ import annotations

import torch

__all__ = ["at_least_float32", "float32_region"]


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 when it is half or bfloat16 (an autocast output); float32 and float64 pass unchanged,
    so the whole model also runs in float64 (the tests compare mathematically equal variants that way)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def float32_region(like: torch.Tensor) -> torch.autocast:
    """A context that switches autocast off on ``like``'s device type."""
    return torch.autocast(device_type=like.device.type, enabled=False)
