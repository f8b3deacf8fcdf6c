"""Flip test-time augmentation: the reflection in centred k-space, the way back onto the 384 grid, equivariant
models, timing. (On data, through reconstruct_from_ckpt.py and the 2026 harness: tests/test_tta_paths.py.)"""
from __future__ import annotations

import math
import time

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from tests.test_inference_timing import batch_of
from tests.test_training import SMALL_MODEL
from utils.data.masks import equispaced_mask
from utils.errors import UserInputError
from utils.inference.reconstruct import ModelClock
from utils.inference.tta import FlipTTA, check_tta, unreflect
from utils.model.builder import build_model, load_model_config
from utils.model.promptmr.crop import entry_crop_or_pad
from utils.mri.acs import acs_mask
from utils.mri.coils import rss_complex
from utils.mri.crop import CHALLENGE_SHAPE, center_crop_or_pad
from utils.mri.fft import fft2c, ifft2c
from utils.mri.reflect import reflect_kspace, reflect_mask, reflected_columns


class ZeroFilledRSS(nn.Module):
    """RSS of the coil images of the data-consistent zero-filled k-space, cropped to 384 x 384.

    Exactly reflection-equivariant: ``ifft2c(reflect(mask * k)) = ramp * flip(ifft2c(mask * k))`` (the
    reflection and the mask commute), and the RSS drops the ramp, a phase.
    """

    def forward(self, masked_kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return center_crop_or_pad(rss_complex(ifft2c(masked_kspace * mask), dim=1), CHALLENGE_SHAPE)


def shifted_reflect_kspace(kspace: torch.Tensor) -> torch.Tensor:
    """``X(-k)`` without the phase: for even W the image mirrored about column W // 2, one column off the flip."""
    return kspace.flip(-2).roll(1, dims=-2) if kspace.shape[-2] % 2 == 0 else kspace.flip(-2)


def _inputs(width: int, height: int = 32, coils: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked k-space (1, coils, H, W, 2) of random coil images under a challenge acc4 mask, and the mask."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(1, coils, height, width, 2, generator=generator)
    mask = torch.from_numpy(equispaced_mask(width, 4)).view(1, 1, 1, width, 1)
    return fft2c(images) * mask, mask


@pytest.mark.parametrize("width", [6, 7, 320, 321, 392])
def test_the_reflected_kspace_is_that_of_the_flipped_coil_images(width):
    images = torch.randn(2, 3, 10, width, dtype=torch.complex128, generator=torch.Generator().manual_seed(width))
    reflected = ifft2c(torch.view_as_complex(reflect_kspace(torch.view_as_real(fft2c(images)))))
    torch.testing.assert_close(reflected, images.flip(-1), rtol=0, atol=1e-6)  # no phase ramp: MRAugment's flip_h
    columns = torch.arange(width, dtype=torch.float32).view(1, 1, 1, width, 1)
    k = columns - width // 2
    assert torch.equal(reflect_mask(columns) - width // 2, torch.where(k == -(width // 2), k, -k) if width % 2 == 0 else -k)


@pytest.mark.parametrize("width", [320, 344, 368, 372, 392, 396, 400, 480])
def test_the_reflected_mask_keeps_the_contiguous_acs_block_and_moves_the_symmetric_one_by_a_line(width):
    for lines in (26, 33, 39):  # odd blocks are asymmetric about W // 2
        for offset in range(4):
            mask = torch.from_numpy(equispaced_mask(width, 4, lines, offset)).view(1, 1, 1, width, 1)
            assert torch.equal(acs_mask(reflect_mask(mask), "contiguous"), reflect_mask(acs_mask(mask, "contiguous")))
            symmetric, reflected = acs_mask(mask).flatten(), acs_mask(reflect_mask(mask)).flatten()
            assert torch.equal(reflect_mask(acs_mask(mask)).flatten(), symmetric.roll(1))  # mirrored about -1/2, not DC
            assert abs(int(reflected.sum()) - int(symmetric.sum())) in (0, 2), (lines, offset)


@pytest.mark.parametrize("width", [320, 321, 344, 383, 384, 385, 392, 395, 396, 480])
@pytest.mark.parametrize("crop", [center_crop_or_pad, entry_crop_or_pad])
def test_the_way_back_is_pixel_exact_on_the_384_grid(width, crop):
    native = torch.arange(1.0, 1 + 5 * width).view(5, width)  # every pixel distinct, none zero
    plain, reflected = crop(native, (5, 384)), crop(native.flip(-1), (5, 384))
    index, both = reflected_columns(width, 384, crop)
    torch.testing.assert_close(reflected[:, index][:, both], plain[:, both], rtol=0, atol=0)
    shown = plain[0] != 0
    lost = shown & ~both  # pixels whose partner the crop removed: column 0 for an odd W > 384 only
    assert lost.sum() == (width % 2 == 1 and width > 384)
    if width % 2 == 0:
        assert torch.equal(index[both], 383 - torch.arange(384)[both])  # the plain flip of the 384 grid
    torch.testing.assert_close(unreflect(reflected, plain, width, crop), plain, rtol=0, atol=0)


@pytest.mark.parametrize("width", [320, 321, 392, 395])
def test_flip_tta_gives_back_the_output_of_an_equivariant_model(width):
    masked_kspace, mask = _inputs(width)
    model = ZeroFilledRSS()
    plain = model(masked_kspace, mask)
    torch.testing.assert_close(FlipTTA(model)(masked_kspace, mask), plain, rtol=0, atol=1e-6 * float(plain.max()))


def _identity_init_model(acs_lines: str) -> nn.Module:
    """The small demo_varnet at initialisation (identity_init: gates at 0, encoder/decoder an identity pair)."""
    torch.manual_seed(0)
    overrides = [*SMALL_MODEL, f"model.acs_lines={acs_lines}"]
    return build_model(OmegaConf.to_container(load_model_config("demo_varnet", overrides), resolve=True)).eval()


@pytest.mark.parametrize("width", [320, 392])
def test_an_identity_init_featurevarnet_with_contiguous_acs_is_reflection_equivariant(width):
    """The property: the refinements are gated off, the encoder/decoder pair is a centre tap, the statistics are
    per channel, and the sensitivity maps come from an ACS block the reflection keeps (contiguous). The default
    symmetric block moves by a line, which on random coil images changes the maps visibly: not equivariant."""
    masked_kspace, mask = _inputs(width)
    index, both = reflected_columns(width, 384)
    errors = {}
    for acs_lines in ("contiguous", "symmetric"):
        model = _identity_init_model(acs_lines)
        with torch.no_grad():
            plain = model(masked_kspace, mask)
            reflected = model(reflect_kspace(masked_kspace), reflect_mask(mask))
            tta = FlipTTA(model)(masked_kspace, mask)
        scale = float(plain.max())
        errors[acs_lines] = float((reflected[..., index][..., both] - plain[..., both]).abs().max()) / scale
        if acs_lines == "contiguous":
            torch.testing.assert_close(tta, plain, rtol=0, atol=2e-6 * scale)
    assert errors["contiguous"] < 2e-6 < 1e-2 < errors["symmetric"]
    model = _identity_init_model("contiguous")
    with torch.no_grad():  # the mirror about column W // 2, mapped back with the flip: one pixel off
        plain = model(masked_kspace, mask)
        shifted = model(shifted_reflect_kspace(masked_kspace), shifted_reflect_kspace(mask))
    assert (shifted[..., index][..., both] - plain[..., both]).abs().max() > 0.1 * plain.max()


class SleepingModel(nn.Module):
    """Sleeps ``seconds`` per call and counts the calls."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds, self.calls = seconds, 0

    def forward(self, masked_kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        time.sleep(self.seconds)
        return torch.zeros(masked_kspace.shape[0], *CHALLENGE_SHAPE)


def test_both_passes_are_the_slices_model_time():
    model = SleepingModel(0.02)
    clock = ModelClock(torch.device("cpu"), warmup_slices=1)
    for _ in range(4):
        clock.run(FlipTTA(model), batch_of(1))
    assert model.calls == 8 and clock.slices == 3
    assert clock.ms_per_slice >= 2 * 20


def test_an_unknown_tta_is_one_line():
    assert check_tta("flip") == "flip" and check_tta("none") == "none"
    with pytest.raises(UserInputError, match=r"^--tta 'rotate' is not a test-time augmentation; choose none or flip$"):
        check_tta("rotate")
