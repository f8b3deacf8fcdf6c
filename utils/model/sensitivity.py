"""Coil sensitivity estimation of E2E-VarNet: ACS lines from the mask, their coil images, a NormUnet, RSS = 1.

The auto-calibration (ACS) block is found from the mask around the centre column ``W // 2`` (DC), by default
as fastMRI does (``acs_lines="symmetric"``, see :mod:`utils.mri.acs`). Only those lines are kept, so the coil
images are low-resolution and alias-free; a NormUnet refines each coil image separately (coils are folded into
the batch, so any number of coils works) and the maps are divided by their root-sum-of-squares.

``coil_chunk`` coils go through the NormUnet at a time (0: all at once). Every coil image is normalised and
refined on its own, so chunking changes no value, only the peak memory: under activation checkpointing each
chunk is its own checkpoint (``run``), and backward then holds the U-Net activations of one chunk instead of all
coils' (at 16 coils x 768 x 396 the sensitivity U-Net's activations are about 4 GiB; benchmarks/model_step.py).
Inference on the CPU (no autograd) always refines one coil per call: the same values, less memory, and faster
(docs/performance.md, "E2E-VarNet inference at batch 1").

With ``residual`` the NormUnet's output is a gated correction added to the ACS coil images (see
:mod:`utils.model.gate`): at initialisation the maps are the ACS images divided by their RSS, the classic
low-resolution estimate, instead of the RSS-normalised output of a random network.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from utils.mri.acs import ACS_MODES, acs_mask
from utils.mri.coils import rss_complex
from utils.mri.fft import ifft2c
from utils.model.gate import residual_gate
from utils.model.norm_unet import NormUnet

__all__ = ["SensitivityModel"]


class SensitivityModel(nn.Module):
    """Masked k-space ``(B, C, H, W, 2)`` and mask ``(B, 1, 1, W, 1)`` -> sensitivity maps ``(B, C, H, W, 2)``."""

    def __init__(
        self,
        chans: int,
        num_pools: int,
        residual: bool = False,
        acs_lines: str = "symmetric",
        norm_eps: float = 0.0,
        coil_chunk: int = 0,
    ):
        super().__init__()
        if acs_lines not in ACS_MODES:
            raise ValueError(f"acs_lines must be one of {ACS_MODES}, got {acs_lines!r}")
        if coil_chunk < 0:
            raise ValueError(f"coil_chunk must be >= 0 (0: all coils at once), got {coil_chunk!r}")
        self.coil_chunk = coil_chunk
        self.norm_unet = NormUnet(chans, num_pools, norm_eps)
        self.acs_lines = acs_lines
        self.residual = residual
        self.gate = residual_gate(residual)

    def refine(self, coil_images: torch.Tensor) -> torch.Tensor:
        """ACS coil images ``(N, 1, H, W, 2)``, one per coil -> unnormalised maps ``(N, 1, H, W, 2)``."""
        refined = self.gate(self.norm_unet(coil_images))
        return coil_images + refined if self.residual else refined

    def forward(self, masked_kspace: torch.Tensor, mask: torch.Tensor, run: Callable | None = None) -> torch.Tensor:
        """Maps with ``sum_c |S_c|^2 = 1`` wherever they are not all zero (where they are, they stay 0).

        ``run(function, *args)`` calls the NormUnet on each chunk (the network passes its checkpointing runner).
        """
        batch, coils, height, width, _ = masked_kspace.shape
        coil_images = ifft2c(masked_kspace * acs_mask(mask, self.acs_lines))
        coil_images = coil_images.reshape(batch * coils, 1, height, width, 2)
        chunk = self.coil_chunk
        if coil_images.device.type == "cpu" and not torch.is_grad_enabled():
            # Inference on the CPU: one coil per call. The values are the same (bitwise, measured), the memory is
            # less, and at brain size a chunk of 4 makes 39 MB activations, above glibc's largest mmap threshold
            # (32 MiB): each is mapped and page-faulted afresh (whole model 1.19x faster per coil at 16 x 768 x 396)
            chunk = 1
        chunks = coil_images.split(chunk) if chunk else (coil_images,)
        refined = [run(self.refine, chunk) if run else self.refine(chunk) for chunk in chunks]
        sens_maps = (refined[0] if len(refined) == 1 else torch.cat(refined)).reshape(batch, coils, height, width, 2)
        norm = rss_complex(sens_maps, dim=1)[:, None, :, :, None]
        return sens_maps / torch.where(norm > 0, norm, 1.0)
