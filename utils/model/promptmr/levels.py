"""The encoder and decoder levels of the PromptMR+ U-Net.

- Encoder level: CABs at the level's width, then a 3x3 stride-2 convolution (with bias) that halves H and W
  and changes the width; the CABs' output is the level's skip feature.
- Decoder level: [momentum over the history (1x1 convolution, CAB)] -> concatenate the prompt -> CABs
  ("fuse") -> 1x1 convolution back to the level's width ("reduce") -> x2 bilinear up-sampling (half-pixel
  centres) and a 1x1 convolution to the next level's width -> add the skip feature -> one CAB.
Only 1x1 convolutions and the stride-2 convolution have no CAB around them; none has a bias except the
stride-2 one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from utils.model.promptmr.attention import ChannelAttentionBlock, cab_stack
from utils.model.promptmr.history import momentum_input

__all__ = ["EncoderLevel", "DecoderLevel"]


class EncoderLevel(nn.Module):
    """``(B, C_in, H, W)`` -> (down-sampled ``(B, C_out, H/2, W/2)``, skip feature ``(B, C_in, H, W)``).

    ``n_cab >= 1``; ``own_first_act``: the first CAB builds its own PReLU (the first level of every U-Net in the
    entry).
    """

    def __init__(
        self, in_chans: int, out_chans: int, n_cab: int, reduction: int, use_ca: bool, shared_act: nn.Module,
        own_first_act: bool = False,
    ):
        super().__init__()
        first = ChannelAttentionBlock(in_chans, reduction, use_ca, shared_act=None if own_first_act else shared_act)
        self.cabs = nn.Sequential(first, *cab_stack(n_cab - 1, in_chans, reduction, use_ca, shared_act))
        self.down = nn.Conv2d(in_chans, out_chans, kernel_size=3, stride=2, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.cabs(x)
        return self.down(skip), skip


class DecoderLevel(nn.Module):
    """``(B, C_in, H, W)``, prompt ``(B, P, H, W)``, skip ``(B, C_out, 2H, 2W)`` -> ``(B, C_out, 2H, 2W)``."""

    def __init__(
        self, in_chans: int, out_chans: int, prompt_dim: int, n_cab: int, reduction: int, use_ca: bool,
        shared_act: nn.Module, n_history: int = 0,
    ):
        super().__init__()
        self.n_history = n_history
        if n_history > 0:
            self.momentum_conv = nn.Conv2d(in_chans * (n_history + 1), in_chans, kernel_size=1, bias=False)
            self.momentum_cab = ChannelAttentionBlock(in_chans, reduction, use_ca, shared_act)
        self.fuse = cab_stack(n_cab, in_chans + prompt_dim, reduction, use_ca, shared_act)
        self.reduce = nn.Conv2d(in_chans + prompt_dim, in_chans, kernel_size=1, bias=False)
        self.up_conv = nn.Conv2d(in_chans, out_chans, kernel_size=1, bias=False)
        self.out_cab = ChannelAttentionBlock(out_chans, reduction, use_ca, shared_act)

    def forward(
        self, x: torch.Tensor, prompt: torch.Tensor, skip: torch.Tensor, history: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``history``: this level's ``(B, n_history * C_in, H, W)`` from earlier cascades, newest first (or None)."""
        if self.n_history > 0:
            x = self.momentum_cab(self.momentum_conv(momentum_input(x, history, self.n_history)))
        x = self.reduce(self.fuse(torch.cat([x, prompt], dim=1)))
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.out_cab(self.up_conv(x) + skip)
