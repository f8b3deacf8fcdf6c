"""Where mixed precision is allowed: only inside the U-Nets.

cuFFT has no half precision for the non-power-of-two sizes of this challenge, torch.fft has no bfloat16, and
k-space scaled by 1e6 overflows float16 (max 65504), so FFTs, data consistency, the feature encoder/decoder
and everything on the scaled k-space run in float32 (SPEC §6). Under ``torch.autocast`` only convolutions
change dtype, so the rule reduces to two habits: the few convolutions outside the U-Nets run in
:func:`float32_region`, and every U-Net output is cast back with ``.float()`` before it meets k-space.
"""
from __future__ import annotations

import torch

__all__ = ["float32_region"]


def float32_region(like: torch.Tensor) -> torch.autocast:
    """A context that switches autocast off on ``like``'s device type."""
    return torch.autocast(device_type=like.device.type, enabled=False)
