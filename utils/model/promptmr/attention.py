"""Channel attention and the channel-attention block (CAB), the building brick of every PromptMR+ U-Net.

A CAB is ``x + CA(conv3x3(act(conv3x3(x))))``; channel attention (RCAN, Zhang et al. 2018) rescales each
channel by ``sigmoid(excite(relu(squeeze(mean_hw(x)))))``, where ``squeeze`` is a 1x1 convolution to
``channels // reduction`` channels (rounded down) and ``excite`` one back. No convolution has a bias.

The activation is a PReLU with one slope. In the 2025 entry every CAB of every U-Net uses the same PReLU
(a default argument, built once per process), except the first CAB of each U-Net's first encoder level,
which builds its own. A CAB therefore either owns its PReLU or holds a :class:`SharedModule` reference to
the one the network owns; the reference is not a submodule, so that slope has one state-dict key and counts
once in ``parameters()``.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["ChannelAttention", "ChannelAttentionBlock", "SharedModule", "cab_stack"]


class SharedModule:
    """A module owned elsewhere, callable here without being registered here (no duplicate state-dict keys).

    A plain attribute, not a submodule: ``deepcopy`` keeps it the owner's copy (memo), and ``.to()`` / ``.double()``
    change the owner's parameters in place, which this reference sees.
    """

    def __init__(self, module: nn.Module):
        self.module = module

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


class ChannelAttention(nn.Module):
    """``(B, C, H, W)`` -> the same, each channel scaled by a gate in (0, 1) computed from all channel means."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.squeeze = nn.Conv2d(channels, channels // reduction, kernel_size=1, bias=False)
        self.excite = nn.Conv2d(channels // reduction, channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.excite(torch.relu(self.squeeze(x.mean(dim=(-2, -1), keepdim=True)))))
        return x * gate


class ChannelAttentionBlock(nn.Module):
    """CAB: ``(B, C, H, W)`` -> ``x + CA(conv(act(conv(x))))`` (3x3 convolutions, no bias; CA optional).

    ``shared_act`` is the network's shared PReLU; ``None`` gives the block a PReLU of its own (``act``).
    """

    def __init__(self, channels: int, reduction: int, use_ca: bool = True, shared_act: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        if shared_act is None:
            self.act = nn.PReLU()
        else:
            self.shared_act = SharedModule(shared_act)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.attention = ChannelAttention(channels, reduction) if use_ca else None

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x) if "act" in self._modules else self.shared_act(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.conv2(self.activation(self.conv1(x)))
        if self.attention is not None:
            residual = self.attention(residual)
        return residual + x


def cab_stack(count: int, channels: int, reduction: int, use_ca: bool, shared_act: nn.Module) -> nn.Sequential:
    """``count`` CABs in a row at ``channels`` channels, all on the shared PReLU (``count == 0``: identity)."""
    return nn.Sequential(*(ChannelAttentionBlock(channels, reduction, use_ca, shared_act) for _ in range(count)))
