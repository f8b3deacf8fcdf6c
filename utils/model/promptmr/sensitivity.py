"""PromptMR+'s coil sensitivity estimate: a fixed block of centre columns, a prompt U-Net per coil, RSS = 1.

The 2025 entry ignores the mask's own calibration block: it keeps ``n = round(0.08 * W)`` k-space columns
starting at ``(W - n + 1) // 2`` (:func:`fixed_acs_window`; 32 of a brain scan's 396 columns) of the masked
k-space, whatever was sampled there. (fastMRI's VarNet instead measures the sampled run about the centre,
:mod:`utils.mri.acs`; on the golden cases that changes the output by 23 to 81 % of its maximum.)

Each coil's low-resolution image then goes alone (2 real channels, no buffer, no history) through a
:class:`~utils.model.promptmr.norm_prompt_unet.NormPromptUnet`, and the maps are divided by their
root-sum-of-squares over coils, without eps (where every coil is exactly 0 they stay 0).

``coil_chunk`` coils go through the U-Net at a time (0: all at once). Every coil is normalised and refined
on its own, so chunking changes no value, only the peak memory: under activation checkpointing each chunk
is its own checkpoint (``run``).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from utils.mri.coils import rss_complex
from utils.mri.fft import ifft2c
from utils.model.promptmr.norm_prompt_unet import NormPromptUnet

__all__ = ["ACS_FRACTION", "fixed_acs_window", "PromptSensitivityModel"]

ACS_FRACTION = 0.08


def fixed_acs_window(width: int, device: torch.device | None = None) -> torch.Tensor:
    """Bool ``(1, 1, 1, W, 1)``: the ``round(0.08 * W)`` centre columns starting at ``(W - n + 1) // 2``."""
    count = round(ACS_FRACTION * width)  # Python's round, as the entry (ties to even; no width here is a tie)
    start = (width - count + 1) // 2
    columns = torch.arange(width, device=device)
    return ((columns >= start) & (columns < start + count)).view(1, 1, 1, width, 1)


class PromptSensitivityModel(nn.Module):
    """Masked k-space ``(B, C, H, W, 2)`` -> sensitivity maps ``(B, C, H, W, 2)`` with unit RSS over coils."""

    def __init__(self, norm_unet: NormPromptUnet, coil_chunk: int = 0):
        super().__init__()
        if coil_chunk < 0:
            raise ValueError(f"coil_chunk must be >= 0 (0: all coils at once), got {coil_chunk!r}")
        self.norm_unet = norm_unet
        self.coil_chunk = coil_chunk

    def refine(self, coil_images: torch.Tensor) -> torch.Tensor:
        """ACS coil images ``(N, 1, H, W, 2)``, one coil each -> unnormalised maps ``(N, 1, H, W, 2)``."""
        return self.norm_unet(coil_images)[0]

    def forward(self, masked_kspace: torch.Tensor, run: Callable | None = None) -> torch.Tensor:
        """``run(function, *args)`` calls the U-Net on each chunk (the network passes its checkpointing runner)."""
        batch, coils, height, width, _ = masked_kspace.shape
        window = fixed_acs_window(width, masked_kspace.device)
        coil_images = ifft2c(torch.where(window, masked_kspace, 0.0)).reshape(batch * coils, 1, height, width, 2)
        chunks = coil_images.split(self.coil_chunk) if self.coil_chunk else (coil_images,)
        refined = [run(self.refine, chunk) if run else self.refine(chunk) for chunk in chunks]
        sens_maps = torch.cat(refined).reshape(batch, coils, height, width, 2)
        norm = rss_complex(sens_maps, dim=1)[:, None, :, :, None]
        return sens_maps / torch.where(norm > 0, norm, 1.0)
