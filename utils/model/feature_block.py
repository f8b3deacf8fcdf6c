"""One cascade of the feature stage: soft data consistency through the shared decoder/encoder, a feature UNet,
and every third block an extra residual "image conv".

    f <- InstanceNorm(f)
    f_new = f - dc_weight * E(sens_reduce(mask * (sens_expand(D(f)) - k0))) - UNet(f)

With ``gated`` the feature UNet's output and the image conv's residual are multiplied by
:class:`~utils.model.gate.ResidualGate` s (0 at init), so a new block starts as a pure data-consistency step.

E and D are the network's shared :class:`~utils.model.feature_space.FeatureEncoder` and
:class:`~utils.model.feature_space.FeatureDecoder`; they are passed in at call time, not owned, so the
state dict holds them once.
"""
from __future__ import annotations

import torch
from torch import nn

from utils.model.feature_space import (
    FeatureDecoder,
    FeatureEncoder,
    FeatureImage,
    features_to_kspace,
    kspace_to_features,
)
from utils.model.gate import residual_gate
from utils.model.precision import at_least_float32, float32_region
from utils.model.unet import ConvBlock, Unet

__all__ = ["ImageConv", "FeatureBlock"]


class ImageConv(nn.Module):
    """InstanceNorm, then a residual [Conv5x5 -> InstanceNorm -> LeakyReLU(0.2)] x 2 (float32 under autocast)."""

    def __init__(self, feature_chans: int, gated: bool = False):
        super().__init__()
        self.input_norm = nn.InstanceNorm2d(feature_chans)
        self.layers = ConvBlock(feature_chans, feature_chans, kernel_size=5)
        self.gate = residual_gate(gated)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features ``(B, F, H, W)`` -> ``(B, F, H, W)``."""
        with float32_region(features):
            features = self.input_norm(features)
            return features + self.gate(self.layers(features))


class FeatureBlock(nn.Module):
    """Feature cascade around ``feature_unet`` (plain or LSKA-UNet, feature_chans in and out)."""

    def __init__(self, feature_unet: Unet, feature_chans: int, image_conv: bool, gated: bool = False):
        super().__init__()
        self.feature_unet = feature_unet
        self.input_norm = nn.InstanceNorm2d(feature_chans)
        self.dc_weight = nn.Parameter(torch.ones(1))
        self.gate = residual_gate(gated)
        self.image_conv = ImageConv(feature_chans, gated) if image_conv else None

    def data_consistency(
        self, features: torch.Tensor, state: FeatureImage, encoder: FeatureEncoder, decoder: FeatureDecoder
    ) -> torch.Tensor:
        """``dc_weight * E(sens_reduce(mask * (sens_expand(D(f)) - k0)))``, features ``(B, F, H, W)``."""
        kspace_error = features_to_kspace(decoder, features, state) - state.ref_kspace
        kspace_error = torch.where(state.mask, kspace_error, 0.0)
        return self.dc_weight * kspace_to_features(encoder, kspace_error, state)

    def forward(self, state: FeatureImage, encoder: FeatureEncoder, decoder: FeatureDecoder) -> FeatureImage:
        """One refinement of ``state.features`` ``(B, F, H, W)``; the rest of the state passes through."""
        with float32_region(state.features):
            features = self.input_norm(at_least_float32(state.features))
            dc_term = self.data_consistency(features, state, encoder, decoder)
        # the U-Net is the only part autocast may touch
        refinement = self.gate(at_least_float32(self.feature_unet(features)))
        new_features = features - dc_term - refinement
        if self.image_conv is not None:
            new_features = self.image_conv(new_features)
        return state._replace(features=new_features)
