"""PromptMR+ (Xin, Ye, Axel, Metaxas, ECCV 2024) as the 2025 SNU challenge winner (team sMaRtIfy) ran it.

    sens_maps  = PromptSensitivityModel(masked k-space)        fixed 8 % centre columns, per-coil prompt U-Net
    img_zf     = sum_c conj(S_c) F^-1 k_c                      the first image and the first latent
    x, latent, history <- cascade_i(x, img_zf, latent, mask, S, history)    for i = 1..num_cascades
    output     = sqrt(sum_c |x S_c|^2) (= |x|, the maps have unit RSS), cropped / zero-padded to 384 x 384

Each cascade (:mod:`~utils.model.promptmr.cascade`) feeds its prompt U-Net the image, A^H A x, the latent,
img_zf and their difference, and hands the next cascade a latent and the features of its decoder levels
(:mod:`~utils.model.promptmr.history`). All U-Nets share one PReLU, except the first CAB of each U-Net
(:mod:`~utils.model.promptmr.attention`). Only ``num_adj_slices = 1`` exists here: one slice in, no
neighbouring slices (the entry built its model that way; PromptMR+'s 5-slice input is not implemented).

The input is raw challenge k-space (about 1e-4, no scale factor: every U-Net normalises its own input and the
maps have unit RSS). With ``checkpointing`` each cascade, and the sensitivity U-Net per chunk of
``sens_coil_chunk`` coils, is recomputed in the backward pass instead of keeping its activations (training
with grad only). FFTs and data consistency run in at least float32; autocast reaches only the U-Nets; float64
inputs run in float64.

Defaults are the paper's sizes; ``configs/model/promptmr_plus_8gb.yaml`` is the entry's. Equality with the
entry's code is golden-tested (``tests/test_promptmr_plus.py``).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from utils.mri.coils import rss_complex, sens_reduce
from utils.mri.crop import CHALLENGE_SHAPE
from utils.model.precision import at_least_float32
from utils.model.promptmr.cascade import PromptMRCascade
from utils.model.promptmr.crop import entry_crop_or_pad
from utils.model.promptmr.norm_prompt_unet import NormPromptUnet
from utils.model.promptmr.prompt_unet import PromptUnet, PromptUnetSizes
from utils.model.promptmr.sensitivity import PromptSensitivityModel

__all__ = ["PromptMRPlus"]


def _coil_products(image: torch.Tensor, sens_maps: torch.Tensor) -> torch.Tensor:
    """``x * S_c``: image ``(B, 1, H, W, 2)``, maps ``(B, C, H, W, 2)`` -> ``(B, C, H, W, 2)``."""
    product = torch.view_as_complex(image.contiguous()) * torch.view_as_complex(sens_maps.contiguous())
    return torch.view_as_real(product)


class PromptMRPlus(nn.Module):
    """Masked k-space ``(B, C, H, W, 2)`` and mask ``(B, 1, 1, W, 1)`` -> image ``(B, 384, 384)``."""

    output_crop = staticmethod(entry_crop_or_pad)  # its crop to 384 x 384, for flip test-time augmentation's way back

    def __init__(
        self,
        num_cascades: int = 12,
        n_feat0: int = 48,
        feature_dim: Sequence[int] = (72, 96, 120),
        prompt_dim: Sequence[int] = (24, 48, 72),
        sens_n_feat0: int = 24,
        sens_feature_dim: Sequence[int] = (36, 48, 60),
        sens_prompt_dim: Sequence[int] = (12, 24, 36),
        len_prompt: Sequence[int] = (3, 3, 3),
        prompt_size: Sequence[int] = (64, 32, 16),
        n_enc_cab: Sequence[int] = (2, 3, 3),
        n_dec_cab: Sequence[int] = (2, 2, 3),
        n_skip_cab: Sequence[int] = (1, 1, 1),
        n_bottleneck_cab: int = 3,
        ca_reduction: int = 16,
        use_ca: bool = True,
        learnable_prompt: bool = False,
        adaptive_input: bool = True,
        n_buffer: int = 4,
        n_history: int = 11,
        checkpointing: bool = False,
        sens_coil_chunk: int = 4,
    ):
        super().__init__()
        if not adaptive_input and n_buffer:
            raise ValueError(f"n_buffer must be 0 without adaptive_input, got {n_buffer!r}")
        self.checkpointing = checkpointing
        self.n_buffer = n_buffer
        self.shared_prelu = nn.PReLU()
        shared = dict(len_prompt=tuple(len_prompt), prompt_size=tuple(prompt_size), n_enc_cab=tuple(n_enc_cab),
                      n_dec_cab=tuple(n_dec_cab), n_skip_cab=tuple(n_skip_cab), n_bottleneck_cab=n_bottleneck_cab,
                      ca_reduction=ca_reduction, use_ca=use_ca, learnable_prompt=learnable_prompt)
        sens_sizes = PromptUnetSizes(sens_n_feat0, tuple(sens_feature_dim), tuple(sens_prompt_dim), **shared)
        sens_unet = PromptUnet(2, 2, sens_sizes, n_history=0, shared_act=self.shared_prelu)
        self.sens_net = PromptSensitivityModel(NormPromptUnet(sens_unet), coil_chunk=sens_coil_chunk)
        sizes = PromptUnetSizes(n_feat0, tuple(feature_dim), tuple(prompt_dim), **shared)
        chans = 2 * (1 + n_buffer)  # the image and the buffer, real and imaginary parts
        self.cascades = nn.ModuleList(
            PromptMRCascade(NormPromptUnet(PromptUnet(chans, chans, sizes, n_history, self.shared_prelu)), n_buffer)
            for _ in range(num_cascades)
        )

    def _run(self, block: Callable, *args):
        """``block(*args)``, checkpointed when asked for and useful (training with grad)."""
        if self.checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def forward(self, masked_kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """masked_kspace ``(B, C, H, W, 2)`` float, mask ``(B, 1, 1, W, 1)`` 0/1 (any dtype) -> ``(B, 384, 384)``,
        float32 (float64 for a float64 input)."""
        # nothing outside the U-Nets is a convolution, so autocast changes nothing here: no float32_region needed
        masked_kspace = at_least_float32(masked_kspace)
        sampled = mask != 0
        sens_maps = self.sens_net(masked_kspace, run=self._run)
        zero_filled = sens_reduce(masked_kspace, sens_maps)
        image, history = zero_filled, None
        latent = zero_filled if self.n_buffer else None  # without a buffer there is no latent
        for cascade in self.cascades:
            image, latent, history = self._run(cascade, image, zero_filled, latent, sampled, sens_maps, history)
        return entry_crop_or_pad(rss_complex(_coil_products(image, sens_maps), dim=1), CHALLENGE_SHAPE)
