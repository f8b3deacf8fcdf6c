"""One E2E-VarNet cascade (Sriram et al. 2020) on coil k-space:

    k <- k - dc_weight * mask * (k - k0) - sens_expand(NormUnet(sens_reduce(k)), S)

With ``gated`` the refinement term is multiplied by a :class:`~utils.model.gate.ResidualGate` (0 at init).
"""
from __future__ import annotations

import torch
from torch import nn

from utils.mri.coils import sens_expand, sens_reduce
from utils.model.gate import residual_gate
from utils.model.norm_unet import NormUnet

__all__ = ["VarNetBlock"]


class VarNetBlock(nn.Module):
    """Soft data consistency plus an image-space NormUnet refinement; all k-space maths in float32."""

    def __init__(self, norm_unet: NormUnet, gated: bool = False):
        super().__init__()
        self.norm_unet = norm_unet
        self.gate = residual_gate(gated)
        self.dc_weight = nn.Parameter(torch.ones(1))

    def forward(
        self,
        kspace: torch.Tensor,
        ref_kspace: torch.Tensor,
        mask: torch.Tensor,
        sens_maps: torch.Tensor,
        centred: bool = True,
    ) -> torch.Tensor:
        """kspace, ref_kspace (measured), sens_maps ``(B, C, H, W, 2)``; mask ``(B, 1, 1, W, 1)`` bool.

        ``centred=False``: k-space and maps are checkerboard-modulated (:mod:`utils.mri.checkerboard`); the
        cascade is the same, computed with plain FFTs, and returns modulated k-space.
        """
        image = sens_reduce(kspace, sens_maps, centred)
        refinement = sens_expand(self.gate(self.norm_unet(image)), sens_maps, centred)
        if torch.is_grad_enabled():
            soft_dc = self.dc_weight * torch.where(mask, kspace - ref_kspace, 0.0)
            return kspace - soft_dc - refinement
        # without autograd: the same operations in the same order, in one coil-sized buffer instead of four
        update = torch.sub(kspace, ref_kspace).masked_fill_(~mask, 0.0).mul_(self.dc_weight)
        return torch.sub(kspace, update, out=update).sub_(refinement)
