"""Large Separable Kernel Attention (LSKA, Lau et al. 2023) and the U-Net encoder block that carries it.

LSKA approximates a large depthwise kernel by a separable local kernel followed by a separable dilated
kernel, then gates its input with the result. The effective kernel size ``k_size`` fixes the two kernels
and the dilation (table 1 of the paper); 7 is the project's default.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["LSKA_KERNELS", "LSKA_GATES", "bounded_gate", "LSKA", "LSKAAttention", "LSKAConvBlock"]

# k_size -> (local kernel, dilated kernel, dilation), from the LSKA paper
LSKA_KERNELS: dict[int, tuple[int, int, int]] = {
    7: (3, 3, 2),
    11: (3, 5, 2),
    23: (5, 7, 3),
    35: (5, 11, 3),
    41: (5, 13, 3),
    53: (5, 17, 3),
}

GATE_CLAMP = 12.0
# "bounded": x * bounded_gate(attn), the entry's final code; "raw": x * attn, the paper's
LSKA_GATES = ("bounded", "raw")


def bounded_gate(attn: torch.Tensor) -> torch.Tensor:
    """``0.5 * (tanh(clamp(attn, -12, 12)) + 1)`` in [0, 1].

    The paper multiplies by the raw attention map; an unbounded gate let activations (and then the loss)
    blow up to NaN in the entry's training, so the gate is squashed and clamped.
    """
    return 0.5 * (torch.tanh(attn.clamp(-GATE_CLAMP, GATE_CLAMP)) + 1.0)


def _depthwise(chans: int, length: int, horizontal: bool, dilation: int = 1) -> nn.Conv2d:
    """Depthwise 1-D convolution along W (``horizontal``) or H, padded to keep the size."""
    pad = dilation * (length - 1) // 2
    kernel, padding = ((1, length), (0, pad)) if horizontal else ((length, 1), (pad, 0))
    return nn.Conv2d(chans, chans, kernel, padding=padding, dilation=dilation, groups=chans)


class LSKA(nn.Module):
    """Separable large-kernel gate: ``x * gate(conv1x1(dilated_sep(local_sep(x))))``, shape kept.

    ``gate`` is ``"bounded"`` (:func:`bounded_gate`, the entry) or ``"raw"`` (the attention map itself, the paper).
    """

    def __init__(self, chans: int, k_size: int = 7, gate: str = "bounded"):
        super().__init__()
        if k_size not in LSKA_KERNELS:
            raise ValueError(f"LSKA k_size must be one of {sorted(LSKA_KERNELS)}, got {k_size}")
        if gate not in LSKA_GATES:
            raise ValueError(f"LSKA gate must be one of {LSKA_GATES}, got {gate!r}")
        self.bounded = gate == "bounded"
        local, dilated, dilation = LSKA_KERNELS[k_size]
        self.attention = nn.Sequential(
            _depthwise(chans, local, horizontal=True),
            _depthwise(chans, local, horizontal=False),
            _depthwise(chans, dilated, horizontal=True, dilation=dilation),
            _depthwise(chans, dilated, horizontal=False, dilation=dilation),
            nn.Conv2d(chans, chans, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``(B, chans, H, W)`` -> ``(B, chans, H, W)``."""
        attention = self.attention(x)
        return x * (bounded_gate(attention) if self.bounded else attention)


class LSKAAttention(nn.Module):
    """Residual attention unit of the LSKA paper: ``x + conv1x1(LSKA(GELU(conv1x1(x))))``."""

    def __init__(self, chans: int, k_size: int = 7, gate: str = "bounded"):
        super().__init__()
        self.proj_in = nn.Conv2d(chans, chans, kernel_size=1)
        self.activation = nn.GELU()
        self.lska = LSKA(chans, k_size, gate)
        self.proj_out = nn.Conv2d(chans, chans, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``(B, chans, H, W)`` -> ``(B, chans, H, W)``."""
        return x + self.proj_out(self.lska(self.activation(self.proj_in(x))))


class LSKAConvBlock(nn.Module):
    """Encoder block of the LSKA-UNet: Conv3x3 -> InstanceNorm -> LSKAAttention -> LeakyReLU(0.2).

    One convolution instead of the plain block's two: the attention unit takes the second one's place,
    which is also what brings the [5, 10, 3] network to the entry's 67.6 M parameters.
    """

    def __init__(self, in_chans: int, out_chans: int, k_size: int = 7, gate: str = "bounded"):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_chans, out_chans, kernel_size=3, padding=1, bias=False),
            nn.InstanceNorm2d(out_chans),
            LSKAAttention(out_chans, k_size, gate),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``(B, in_chans, H, W)`` -> ``(B, out_chans, H, W)``."""
        return self.layers(x)
