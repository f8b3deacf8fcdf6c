"""Coil sensitivity estimation of E2E-VarNet: ACS lines from the mask, their coil images, a NormUnet, RSS = 1.

The auto-calibration (ACS) block is found from the mask around the centre column ``W // 2`` (DC), by default
as fastMRI does (``acs_lines="symmetric"``, see :mod:`utils.mri.acs`). Only those lines are kept, so the coil
images are low-resolution and alias-free; a NormUnet refines each coil image separately (coils are folded into
the batch, so any number of coils works) and the maps are divided by their root-sum-of-squares.

With ``residual`` the NormUnet's output is a gated correction added to the ACS coil images (see
:mod:`utils.model.gate`): at initialisation the maps are the ACS images divided by their RSS, the classic
low-resolution estimate, instead of the RSS-normalised output of a random network.
"""
from __future__ import annotations

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
        self, chans: int, num_pools: int, residual: bool = False, acs_lines: str = "symmetric", norm_eps: float = 0.0
    ):
        super().__init__()
        if acs_lines not in ACS_MODES:
            raise ValueError(f"acs_lines must be one of {ACS_MODES}, got {acs_lines!r}")
        self.norm_unet = NormUnet(chans, num_pools, norm_eps)
        self.acs_lines = acs_lines
        self.residual = residual
        self.gate = residual_gate(residual)

    def forward(self, masked_kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Maps with ``sum_c |S_c|^2 = 1`` wherever they are not all zero (where they are, they stay 0)."""
        batch, coils, height, width, _ = masked_kspace.shape
        coil_images = ifft2c(masked_kspace * acs_mask(mask, self.acs_lines))
        coil_images = coil_images.reshape(batch * coils, 1, height, width, 2)
        refined = self.gate(self.norm_unet(coil_images))
        if self.residual:
            refined = coil_images + refined
        sens_maps = refined.reshape(batch, coils, height, width, 2)
        norm = rss_complex(sens_maps, dim=1)[:, None, :, :, None]
        return sens_maps / torch.where(norm > 0, norm, 1.0)
