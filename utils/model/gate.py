"""ReZero gates (Bachlechner et al. 2021): a learnable scalar, zero at initialisation, on a residual branch.

With ``identity_init`` every refinement of the network (the sensitivity NormUnet's correction, each feature
UNet, each image conv, each image-cascade NormUnet) is multiplied by such a gate. At step 0 the network then
starts from the zero-filled input instead of a random image: image cascades return it exactly (an E2E-VarNet
gives the zero-filled RSS), the feature stage a data-consistent SENSE image with ACS sensitivity maps (its
InstanceNorms renormalise after each data-consistency step, so only approximately); the gates learn first, the
networks behind them as soon as their gate leaves zero.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["ResidualGate", "residual_gate"]


class ResidualGate(nn.Module):
    """``x -> alpha * x`` with a learnable scalar ``alpha`` that starts at 0."""

    def __init__(self):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * x


def residual_gate(enabled: bool) -> nn.Module:
    """A :class:`ResidualGate` when ``enabled``, else ``nn.Identity`` (no parameter, original network)."""
    return ResidualGate() if enabled else nn.Identity()
