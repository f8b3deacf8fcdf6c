"""One PromptMR+ cascade: image-space gradient step on the data term plus a prompt U-Net with adaptive input.

With ``A = mask * F * S`` (coil expansion, FFT, sampling) and ``A^H`` its adjoint (SENSE combination):

    ffx        = A^H A x                          the current image seen through the sampling
    img_zf     = A^H y                            the zero-filled image (fixed for the whole network)
    U-Net in   = [x, ffx, latent, img_zf, ffx - img_zf]          (``n_buffer = 4``; complex channels)
    U-Net out  = [model_term, -, next_latent, -, -]              (the 1st and 3rd channels are used)
    x_next     = x - dc_weight * (ffx - img_zf) - model_term

The buffer after ``x`` is ``[ffx, latent, img_zf]`` followed by ``n_buffer - 3`` copies of ``ffx - img_zf``
(the entry's rule); ``n_buffer = 0`` gives plain PromptMR: the U-Net sees ``x`` alone and there is no latent.
The k-space maths runs in at least float32 (:mod:`utils.mri.coils`); only the U-Net may run under autocast.
"""
from __future__ import annotations

import torch
from torch import nn

from utils.mri.coils import sens_expand, sens_reduce
from utils.model.promptmr.history import History
from utils.model.promptmr.norm_prompt_unet import NormPromptUnet

__all__ = ["FIXED_BUFFER", "PromptMRCascade"]

FIXED_BUFFER = 3  # ffx, latent, img_zf; any further buffer channels repeat ffx - img_zf


class PromptMRCascade(nn.Module):
    """``(x, img_zf, latent, mask, sens_maps, history)`` -> ``(x_next, next_latent, next_history)``."""

    def __init__(self, norm_unet: NormPromptUnet, n_buffer: int = 4):
        super().__init__()
        if n_buffer and n_buffer < FIXED_BUFFER:
            raise ValueError(f"n_buffer must be 0 or at least {FIXED_BUFFER}, got {n_buffer!r}")
        self.norm_unet = norm_unet
        self.n_buffer = n_buffer
        self.dc_weight = nn.Parameter(torch.ones(1))

    def unet_input(
        self, image: torch.Tensor, ffx: torch.Tensor, latent: torch.Tensor | None, zero_filled: torch.Tensor
    ) -> torch.Tensor:
        """Each ``(B, 1, H, W, 2)`` -> the U-Net's complex channels ``(B, 1 + n_buffer, H, W, 2)``."""
        if not self.n_buffer:
            return image
        extra = [ffx - zero_filled] * (self.n_buffer - FIXED_BUFFER)
        return torch.cat([image, ffx, latent, zero_filled, *extra], dim=1)

    def forward(
        self,
        image: torch.Tensor,
        zero_filled: torch.Tensor,
        latent: torch.Tensor | None,
        sampled: torch.Tensor,
        sens_maps: torch.Tensor,
        history: History = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, History]:
        """image, zero_filled, latent ``(B, 1, H, W, 2)``; sampled ``(B, 1, 1, W, 1)`` bool;
        sens_maps ``(B, C, H, W, 2)``; history: see :mod:`~utils.model.promptmr.history`."""
        ffx = sens_reduce(torch.where(sampled, sens_expand(image, sens_maps), 0.0), sens_maps)
        output, history = self.norm_unet(self.unet_input(image, ffx, latent, zero_filled), history)
        model_term = output[:, :1]
        next_latent = output[:, 2:3] if self.n_buffer else None
        return image - (ffx - zero_filled) * self.dc_weight - model_term, next_latent, history
