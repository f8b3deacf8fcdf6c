"""The PromptMR+ U-Net: three encoder levels, a bottleneck, three prompted decoder levels with history.

    input conv 3x3 (in_chans -> n_feat0)
    encoder levels 1..3: n_feat0 -> feature_dim[0] -> feature_dim[1] -> feature_dim[2], each halving H and W
    bottleneck: n_bottleneck_cab CABs at feature_dim[2]
    decoder levels 3..1 (deepest first): prompt block + momentum over the history + CABs, up to the skip's
        width; each skip feature passes its own CABs (n_skip_cab; 0: none) first
    output conv 5x5 (n_feat0 -> out_chans)

H and W must be multiples of 8 (:class:`~utils.model.promptmr.norm_prompt_unet.NormPromptUnet` pads to them).
No convolution has a bias except the encoders' stride-2 ones. Level index 0 below is the full-resolution level
(the entry's ``*_level1``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from utils.model.promptmr.attention import cab_stack
from utils.model.promptmr.history import History, next_history
from utils.model.promptmr.levels import DecoderLevel, EncoderLevel
from utils.model.promptmr.prompt import PromptBlock

__all__ = ["PromptUnetSizes", "PromptUnet"]

LEVELS = 3


@dataclass(frozen=True)
class PromptUnetSizes:
    """Widths and depths of one PromptMR+ U-Net; every list has one entry per level, full resolution first."""

    n_feat0: int
    feature_dim: Sequence[int]
    prompt_dim: Sequence[int]
    len_prompt: Sequence[int]
    prompt_size: Sequence[int]
    n_enc_cab: Sequence[int]
    n_dec_cab: Sequence[int]
    n_skip_cab: Sequence[int]
    n_bottleneck_cab: int
    ca_reduction: int
    use_ca: bool = True
    learnable_prompt: bool = False


class PromptUnet(nn.Module):
    """``(B, in_chans, H, W)`` and a history (or None) -> ``(B, out_chans, H, W)`` and the next history.

    ``shared_act`` is the PReLU shared by all CABs but the first of encoder level 1 (see
    :mod:`~utils.model.promptmr.attention`); ``None`` makes this U-Net own one (``shared_prelu``).
    With ``n_history == 0`` there is no momentum layer and the returned history is ``None``.
    """

    def __init__(
        self, in_chans: int, out_chans: int, sizes: PromptUnetSizes, n_history: int = 0,
        shared_act: nn.Module | None = None,
    ):
        super().__init__()
        if shared_act is None:
            self.shared_prelu = shared_act = nn.PReLU()
        self.n_history = n_history
        s = sizes
        widths = [s.n_feat0, *s.feature_dim]  # the input width of each encoder level, then the bottleneck's
        cab_args = dict(reduction=s.ca_reduction, use_ca=s.use_ca, shared_act=shared_act)
        self.input_conv = nn.Conv2d(in_chans, s.n_feat0, kernel_size=3, padding=1, bias=False)
        self.encoders = nn.ModuleList(
            EncoderLevel(widths[level], widths[level + 1], s.n_enc_cab[level], own_first_act=level == 0, **cab_args)
            for level in range(LEVELS)
        )
        self.skips = nn.ModuleList(cab_stack(s.n_skip_cab[level], widths[level], **cab_args) for level in range(LEVELS))
        self.bottleneck = cab_stack(s.n_bottleneck_cab, widths[LEVELS], **cab_args)
        self.prompts = nn.ModuleList(
            PromptBlock(
                widths[level + 1], s.prompt_dim[level], s.len_prompt[level], s.prompt_size[level], s.learnable_prompt
            )
            for level in range(LEVELS)
        )
        self.decoders = nn.ModuleList(
            DecoderLevel(
                widths[level + 1], widths[level], s.prompt_dim[level], s.n_dec_cab[level], n_history=n_history,
                **cab_args,
            )
            for level in range(LEVELS)
        )
        self.output_conv = nn.Conv2d(s.n_feat0, out_chans, kernel_size=5, padding=2, bias=False)

    def forward(self, x: torch.Tensor, history: History = None) -> tuple[torch.Tensor, History]:
        """``history``: one tensor per decoder level, deepest first (:mod:`~utils.model.promptmr.history`)."""
        x = self.input_conv(x)
        skips = []
        for encoder in self.encoders:
            x, skip = encoder(x)
            skips.append(skip)
        x = self.bottleneck(x)
        decoder_inputs = []
        for step, level in enumerate(reversed(range(LEVELS))):  # deepest first
            decoder_inputs.append(x)
            level_history = None if history is None else history[step]
            prompt = self.prompts[level](x)
            x = self.decoders[level](x, prompt, self.skips[level](skips[level]), level_history)
        if self.n_history == 0:
            return self.output_conv(x), None
        previous = [None] * LEVELS if history is None else history
        new_history = tuple(next_history(now, old, self.n_history) for now, old in zip(decoder_inputs, previous))
        return self.output_conv(x), new_history
