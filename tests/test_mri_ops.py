"""FFT, RSS and the centre crop of utils/mri against numpy (fastMRI: centred, norm='ortho')."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from utils.mri.checkerboard import fft2 as checkerboard_fft2
from utils.mri.checkerboard import ifft2 as checkerboard_ifft2
from utils.mri.checkerboard import image_checkerboard, kspace_checkerboard
from utils.mri.coils import rss, rss_complex
from utils.mri.crop import center_crop_or_pad
from utils.mri.fft import fft2c, ifft2c


def numpy_fft2c(x: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def numpy_ifft2c(x: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def to_real_layout(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack((x.real, x.imag), axis=-1).astype(np.float32))


@pytest.mark.parametrize("height, width", [(8, 8), (7, 9), (12, 5)])
@pytest.mark.parametrize("transform, reference", [(fft2c, numpy_fft2c), (ifft2c, numpy_ifft2c)])
def test_centred_fft_matches_numpy_in_both_layouts(height, width, transform, reference):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, height, width)) + 1j * rng.standard_normal((2, 3, height, width))
    expected = reference(x)
    real_layout = transform(to_real_layout(x))
    real_layout = real_layout.numpy()
    np.testing.assert_allclose(real_layout[..., 0] + 1j * real_layout[..., 1], expected, atol=1e-5)
    complex_layout = transform(torch.from_numpy(x.astype(np.complex64)))
    np.testing.assert_allclose(complex_layout.numpy(), expected, atol=1e-5)


def test_dc_sits_at_the_centre_index():
    image = torch.ones(1, 6, 7, 2) * torch.tensor([1.0, 0.0])
    kspace = fft2c(image)
    magnitude = kspace.square().sum(-1).sqrt()[0]
    assert magnitude.argmax().item() == 3 * 7 + 3
    assert magnitude[3, 3].item() == pytest.approx(np.sqrt(42), rel=1e-5)


def test_rss_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 5, 6)) + 1j * rng.standard_normal((4, 5, 6))
    expected = np.sqrt((np.abs(x) ** 2).sum(axis=0))
    np.testing.assert_allclose(rss_complex(to_real_layout(x), dim=0).numpy(), expected, rtol=1e-5)
    # a negative dim counts the axes without the complex one: -3 is the coil axis of (C, H, W, 2)
    np.testing.assert_allclose(rss_complex(to_real_layout(x), dim=-3).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(rss_complex(to_real_layout(x[None]), dim=-3)[0].numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(rss(torch.from_numpy(x.astype(np.complex64)), dim=0).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(rss(torch.from_numpy(np.abs(x)), dim=0).numpy(), expected, rtol=1e-5)


def test_fft_real_layout_stays_float32_for_half_input():
    data = torch.randn(2, 8, 8, 2).half()
    assert fft2c(data).dtype == torch.float32


def test_center_crop_and_pad_keep_the_fft_centre():
    for width in (320, 321, 396, 397):
        image = np.zeros((400, width), np.float32)
        image[400 // 2, width // 2] = 1.0
        out = center_crop_or_pad(image, (384, 384))
        assert out.shape == (384, 384)
        assert out[192, 192] == 1.0 and out.sum() == 1.0
    tensor = torch.arange(12.0).view(3, 4)
    assert center_crop_or_pad(tensor, (3, 2)).tolist() == [[1, 2], [5, 6], [9, 10]]


@pytest.mark.parametrize("height, width", [(8, 8), (6, 10), (10, 4)])
def test_checkerboard_modulation_is_the_centred_fft_without_shifts(height, width):
    """fft2c(x) = Q fft2(P x) and ifft2c(k) = P ifft2(Q k) for even sizes (utils.mri.checkerboard)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, height, width)) + 1j * rng.standard_normal((2, height, width))
    image_board = image_checkerboard(height, width, torch.device("cpu"), torch.float64)[..., 0].numpy()
    kspace_board = kspace_checkerboard(height, width, torch.device("cpu"), torch.float64)[..., 0].numpy()
    modulated_fft = kspace_board * checkerboard_fft2(torch.from_numpy(image_board * x)).numpy()
    modulated_ifft = image_board * checkerboard_ifft2(torch.from_numpy(kspace_board * x)).numpy()
    np.testing.assert_allclose(modulated_fft, numpy_fft2c(x), atol=1e-12)
    np.testing.assert_allclose(modulated_ifft, numpy_ifft2c(x), atol=1e-12)
