"""FeatureVarNet: sensitivity maps, then feature cascades (LSKA-UNet, then plain UNet), then image cascades.

``cascade_counts = [a, b, c]``:
1. ``a`` feature blocks whose UNet is the LSKA-UNet;
2. ``b`` feature blocks with the plain feature UNet; every third feature block overall (0, 3, 6, ...) adds
   the extra image conv;
3. the features are decoded to coil k-space (InstanceNorm -> decoder -> sens_expand), then ``c`` E2E-VarNet
   image cascades refine it.
``[0, 0, c]`` builds no encoder or decoder: it is exactly an E2E-VarNet with ``c`` cascades.

k-space is multiplied by ``kspace_mult_factor`` on entry (1e6 in the entry: the raw values are ~1e-6..1e-3) and
divided by it before the final inverse FFT. With the references' statistics (``norm_eps=0``) the network is
scale-free, so the factor changes nothing but rounding; with ``norm_eps > 0`` it sets how small that eps is
against the data. The output is the RSS of the coil images centre-cropped (or zero-padded) to 384x384.

The defaults compute what the references compute (fastMRI's VarNet for ``[0, 0, c]``, the 2025 entry's
``FlexibleCascadeVarNet(variant="dlka")`` otherwise; golden tests in ``tests/test_reference_equality.py``). The
repository's own choices are named options (docs/model.md, "Where the model is not the reference"):
``acs_lines="contiguous"``, ``feature_padding="zero_centred"``, ``norm_eps > 0``; ``lska_gate="raw"`` is the
LSKA paper's ungated attention.

With ``identity_init`` (a choice of this repository, off in the entry's configs) every refinement sits behind a
ReZero gate that starts at 0, the sensitivity model refines the ACS coil images instead of replacing them, and
the feature encoder/decoder start as an identity pair: at step 0 the network returns (approximately, in the
feature stage, whose InstanceNorms renormalise) the data-consistent SENSE reconstruction of the zero-filled
input, so short trainings start at the zero-filled baseline.

With ``checkpointing`` every block (the sensitivity NormUnet, per chunk of ``sens_coil_chunk`` coils, the
encoding, each cascade and the decoding) is recomputed in the backward pass instead of keeping its activations;
it acts only when training with grad. ``sens_coil_chunk`` changes no value (each coil is refined on its own),
only the memory.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from utils.mri.checkerboard import ifft2, image_checkerboard, kspace_checkerboard, shift_free
from utils.mri.coils import rss_complex
from utils.mri.crop import CHALLENGE_SHAPE, center_crop_or_pad
from utils.mri.fft import ifft2c
from utils.model.feature_block import FeatureBlock
from utils.model.feature_space import (
    FeatureDecoder,
    FeatureEncoder,
    FeatureImage,
    encode_input,
    features_to_kspace,
    init_identity_pair,
)
from utils.model.norm_unet import NormUnet
from utils.model.precision import at_least_float32, float32_region
from utils.model.sensitivity import SensitivityModel
from utils.model.unet import Unet
from utils.model.varnet_block import VarNetBlock

__all__ = ["FeatureVarNet"]

# every IMAGE_CONV_EVERY-th feature block (0, 3, 6, ...) carries the extra image conv
IMAGE_CONV_EVERY = 3


def _feature_block(
    index: int, lska: bool, feature_chans: int, unet_chans: int, pools: int, lska_k_size: int, padding: str, lska_gate: str, gated: bool
) -> FeatureBlock:
    """Feature block ``index``: an LSKA-UNet (stage 1) or plain UNet (stage 2), with the image conv every third block."""
    unet = Unet(feature_chans, feature_chans, unet_chans, pools, lska_k_size=lska_k_size if lska else None, norm_act_output=True,
                padding=padding, lska_gate=lska_gate)
    return FeatureBlock(unet, feature_chans, image_conv=index % IMAGE_CONV_EVERY == 0, gated=gated)


class FeatureVarNet(nn.Module):
    """Masked k-space ``(B, C, H, W, 2)`` and mask ``(B, 1, 1, W, 1)`` -> image ``(B, 384, 384)``."""

    def __init__(
        self,
        cascade_counts: Sequence[int] = (5, 10, 3),
        feature_chans: int = 12,
        unet_chans: int = 24,
        pools: int = 4,
        sens_chans: int = 8,
        sens_pools: int = 4,
        image_chans: int = 18,
        image_pools: int = 4,
        lska_k_size: int = 7,
        kspace_mult_factor: float = 1e6,
        checkpointing: bool = False,
        identity_init: bool = False,
        acs_lines: str = "symmetric",
        feature_padding: str = "reflect",
        norm_eps: float = 0.0,
        lska_gate: str = "bounded",
        sens_coil_chunk: int = 4,
    ):
        super().__init__()
        lska_blocks, plain_blocks, image_blocks = (int(count) for count in cascade_counts)
        self.cascade_counts = (lska_blocks, plain_blocks, image_blocks)
        self.kspace_mult_factor = float(kspace_mult_factor)
        self.checkpointing = checkpointing

        self.norm_eps = float(norm_eps)
        self.sens_net = SensitivityModel(
            sens_chans,
            sens_pools,
            residual=identity_init,
            acs_lines=acs_lines,
            norm_eps=self.norm_eps,
            coil_chunk=sens_coil_chunk,
        )
        num_feature_blocks = lska_blocks + plain_blocks
        if num_feature_blocks:
            self.encoder = FeatureEncoder(feature_chans)
            self.decoder = FeatureDecoder(feature_chans)
            self.decode_norm = nn.InstanceNorm2d(feature_chans)
            if identity_init:
                init_identity_pair(self.encoder, self.decoder)
        self.feature_blocks = nn.ModuleList(
            _feature_block(index, index < lska_blocks, feature_chans, unet_chans, pools, lska_k_size, feature_padding, lska_gate, identity_init)
            for index in range(num_feature_blocks)
        )
        self.image_blocks = nn.ModuleList(
            VarNetBlock(NormUnet(image_chans, image_pools, self.norm_eps), gated=identity_init)
            for _ in range(image_blocks)
        )

    def _run(self, block: Callable, *args):
        """``block(*args)``, checkpointed when asked for and useful (training with grad)."""
        if self.checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def _decode(self, state: FeatureImage) -> torch.Tensor:
        """Features -> coil k-space ``(B, C, H, W, 2)``."""
        with float32_region(state.features):
            features = self.decode_norm(state.features)
        return features_to_kspace(self.decoder, features, state)

    def _to_image(self, kspace: torch.Tensor, centred: bool = True) -> torch.Tensor:
        """Scaled coil k-space ``(B, C, H, W, 2)`` -> RSS image ``(B, 384, 384)`` in physical units.

        ``centred=False``: modulated k-space (:mod:`utils.mri.checkerboard`), whose plain inverse FFT has the
        magnitudes of the centred one.
        """
        kspace = kspace / self.kspace_mult_factor
        if centred:
            coil_images = ifft2c(kspace)
        else:
            coil_images = torch.view_as_real(ifft2(torch.view_as_complex(kspace)))
        return center_crop_or_pad(rss_complex(coil_images, dim=1), CHALLENGE_SHAPE)

    def _image_cascades(
        self, kspace: torch.Tensor, ref_kspace: torch.Tensor, sampled: torch.Tensor, sens_maps: torch.Tensor
    ) -> torch.Tensor:
        """The image cascades from ``kspace``, then :meth:`_to_image`.

        With even H and W they run in the checkerboard-modulated frame, which needs no FFT shifts: modulating
        k-space and maps once costs two passes, the shifts cost four copies of the coil k-space per FFT.
        """
        height, width = kspace.shape[-3:-1]
        if not self.image_blocks or not shift_free(height, width):
            for block in self.image_blocks:
                kspace = self._run(block, kspace, ref_kspace, sampled, sens_maps)
            return self._to_image(kspace)
        board = kspace_checkerboard(height, width, kspace.device, kspace.dtype)
        modulated_ref = ref_kspace * board
        kspace = modulated_ref if kspace is ref_kspace else kspace * board
        sens_maps = sens_maps * image_checkerboard(height, width, sens_maps.device, sens_maps.dtype)
        for block in self.image_blocks:
            kspace = self._run(block, kspace, modulated_ref, sampled, sens_maps, False)
        return self._to_image(kspace, centred=False)

    def forward(self, masked_kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """masked_kspace ``(B, C, H, W, 2)`` float, mask ``(B, 1, 1, W, 1)`` 0/1 -> ``(B, 384, 384)`` float32."""
        with float32_region(masked_kspace):
            ref_kspace = at_least_float32(masked_kspace) * self.kspace_mult_factor
        sens_maps = self.sens_net(ref_kspace, mask, run=self._run)
        sampled = mask.bool()

        kspace = ref_kspace
        if self.feature_blocks:
            encode = partial(encode_input, norm_eps=self.norm_eps)
            state = self._run(encode, self.encoder, ref_kspace, sampled, sens_maps)
            for block in self.feature_blocks:
                state = self._run(block, state, self.encoder, self.decoder)
            kspace = self._run(self._decode, state)
        return self._image_cascades(kspace, ref_kspace, sampled, sens_maps)
