"""The feature space of Feature-Image VarNet: one shared encoder and decoder between images and features.

The SENSE-combined image of the measured k-space fixes per-sample, per-channel (real, imaginary) statistics
(mean and biased standard deviation, as the entry's ``NormStats``); the encoder normalises with them before
its 5x5 convolution, the decoder undoes them after its own. Every
feature block reuses the same encoder, decoder and statistics, carried in a :class:`FeatureImage`.
Both convolutions act on 1e6-scaled image values, so they run in float32 under autocast.

:func:`init_identity_pair` makes the decoder invert the encoder on two feature channels (the rest of the
encoder's channels keep their random initialisation and carry learned features).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from utils.mri.coils import sens_expand, sens_reduce
from utils.model.complex_layout import channels_to_complex, complex_to_channels
from utils.model.norm_unet import channel_mean_std
from utils.model.precision import at_least_float32, float32_region

__all__ = ["FeatureImage", "FeatureEncoder", "FeatureDecoder", "encode_input", "features_to_kspace",
           "init_identity_pair", "kspace_to_features"]


class FeatureImage(NamedTuple):
    """State passed from feature block to feature block (k-space in 1e6-scaled units)."""

    features: torch.Tensor  # (B, F, H, W)
    sens_maps: torch.Tensor  # (B, C, H, W, 2)
    ref_kspace: torch.Tensor  # (B, C, H, W, 2), the measured (masked) k-space
    mask: torch.Tensor  # (B, 1, 1, W, 1) bool, True on sampled lines
    mean: torch.Tensor  # (B, 2, 1, 1), of the SENSE-combined input image
    std: torch.Tensor  # (B, 2, 1, 1)


class FeatureEncoder(nn.Module):
    """Complex image ``(B, 1, H, W, 2)`` -> normalise -> Conv5x5 -> features ``(B, feature_chans, H, W)``."""

    def __init__(self, feature_chans: int):
        super().__init__()
        self.conv = nn.Conv2d(2, feature_chans, kernel_size=5, padding=2)

    def forward(self, image: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """image ``(B, 1, H, W, 2)``; mean, std ``(B, 2, 1, 1)``."""
        with float32_region(image):
            return self.conv((complex_to_channels(at_least_float32(image)) - mean) / std)


class FeatureDecoder(nn.Module):
    """Features ``(B, feature_chans, H, W)`` -> Conv5x5 -> de-normalise -> complex image ``(B, 1, H, W, 2)``."""

    def __init__(self, feature_chans: int):
        super().__init__()
        self.conv = nn.Conv2d(feature_chans, 2, kernel_size=5, padding=2)

    def forward(self, features: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """features ``(B, F, H, W)``; mean, std ``(B, 2, 1, 1)``."""
        with float32_region(features):
            return channels_to_complex(self.conv(at_least_float32(features)) * std + mean)


@torch.no_grad()
def init_identity_pair(encoder: FeatureEncoder, decoder: FeatureDecoder) -> None:
    """Encoder channels 0, 1 := the normalised (real, imaginary) image; the decoder reads back exactly those.

    Then ``decoder(InstanceNorm(encoder(x)))`` is ``x`` (InstanceNorm of an image already normalised by its
    own statistics is the identity up to its eps), so the feature stage starts from its input image.
    """
    kernel = encoder.conv.kernel_size[0]
    centre = kernel // 2
    identity = torch.zeros(2, 2, kernel, kernel)
    identity[0, 0, centre, centre] = identity[1, 1, centre, centre] = 1.0
    encoder.conv.weight[:2] = identity
    encoder.conv.bias[:2] = 0.0
    decoder.conv.weight.zero_()
    decoder.conv.weight[:, :2] = identity
    decoder.conv.bias.zero_()


def kspace_to_features(encoder: FeatureEncoder, kspace: torch.Tensor, state: FeatureImage) -> torch.Tensor:
    """Coil k-space ``(B, C, H, W, 2)`` -> SENSE combination -> features ``(B, F, H, W)``."""
    return encoder(sens_reduce(kspace, state.sens_maps), state.mean, state.std)


def features_to_kspace(decoder: FeatureDecoder, features: torch.Tensor, state: FeatureImage) -> torch.Tensor:
    """Features ``(B, F, H, W)`` -> complex image -> coil k-space ``(B, C, H, W, 2)``."""
    return sens_expand(decoder(features, state.mean, state.std), state.sens_maps)


def encode_input(
    encoder: FeatureEncoder,
    masked_kspace: torch.Tensor,
    mask: torch.Tensor,
    sens_maps: torch.Tensor,
    norm_eps: float = 0.0,
) -> FeatureImage:
    """First feature image: statistics and features of the SENSE-combined measured k-space.

    masked_kspace, sens_maps ``(B, C, H, W, 2)``; mask ``(B, 1, 1, W, 1)``; ``norm_eps`` as in
    :func:`~utils.model.norm_unet.channel_mean_std`.
    """
    image = sens_reduce(masked_kspace, sens_maps)
    mean, std = channel_mean_std(complex_to_channels(image), unbiased=False, eps=norm_eps)
    features = encoder(image, mean, std)
    return FeatureImage(features, sens_maps, masked_kspace, mask.bool(), mean, std)
