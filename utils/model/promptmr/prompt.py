"""The prompt block of PromptMR (Xin et al.): an input-dependent mix of a few learned (or fixed) feature maps.

A prompt block holds ``len_prompt`` prompt components, each ``prompt_dim`` channels of ``prompt_size`` x
``prompt_size`` pixels. From the spatial mean of the decoder features it computes softmax weights over the
components, mixes them, resizes the mix bilinearly (half-pixel centres, ``align_corners=False``) to the
features' size and passes it through a 3x3 convolution; the decoder then concatenates it to its features.

The components keep their ``torch.rand`` initial values unless ``learnable_prompt`` (off in PromptMR+ and in
the 2025 entry): they are parameters without gradient, counted by ``parameters()`` but not trained.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PromptBlock"]


class PromptBlock(nn.Module):
    """Decoder features ``(B, in_chans, H, W)`` -> prompt ``(B, prompt_dim, H, W)``."""

    def __init__(self, in_chans: int, prompt_dim: int, len_prompt: int, prompt_size: int, learnable: bool = False):
        super().__init__()
        self.components = nn.Parameter(
            torch.rand(len_prompt, prompt_dim, prompt_size, prompt_size), requires_grad=learnable
        )
        self.selector = nn.Linear(in_chans, len_prompt)
        self.conv = nn.Conv2d(prompt_dim, prompt_dim, kernel_size=3, padding=1, bias=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.selector(features.mean(dim=(-2, -1))), dim=1)  # (B, len_prompt)
        mix = (weights[:, :, None, None, None] * self.components).sum(dim=1)  # (B, prompt_dim, size, size)
        mix = F.interpolate(mix, size=features.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(mix)
