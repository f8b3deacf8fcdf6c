"""FFT, RSS and the centre crop against numpy written out independently."""
from __future__ import annotations

import numpy as np
import torch

from utils.mri.coils import rss, rss_complex
from utils.mri.crop import center_crop_or_pad
from utils.mri.fft import fft2c, ifft2c


def _numpy_fft2c(x: np.ndarray, inverse: bool = False) -> np.ndarray:
    transform = np.fft.ifft2 if inverse else np.fft.fft2
    return np.fft.fftshift(transform(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def test_fft_matches_numpy_in_both_layouts_for_odd_and_even_sizes():
    rng = np.random.default_rng(0)
    for shape in [(3, 8, 6), (2, 7, 9)]:
        data = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
        for ours, inverse in ((fft2c, False), (ifft2c, True)):
            expected = _numpy_fft2c(data.astype(np.complex128), inverse)
            np.testing.assert_allclose(ours(torch.from_numpy(data)).numpy(), expected, atol=1e-5)
            real_layout = ours(torch.view_as_real(torch.from_numpy(data)))
            np.testing.assert_allclose(torch.view_as_complex(real_layout).numpy(), expected, atol=1e-5)


def test_fft_real_layout_stays_float32_for_half_input():
    data = torch.randn(2, 8, 8, 2).half()
    assert fft2c(data).dtype == torch.float32


def test_rss_matches_numpy():
    rng = np.random.default_rng(1)
    data = rng.standard_normal((4, 5, 6)) + 1j * rng.standard_normal((4, 5, 6))
    expected = np.sqrt((np.abs(data) ** 2).sum(0))
    np.testing.assert_allclose(rss(torch.from_numpy(data), dim=0).numpy(), expected)
    np.testing.assert_allclose(rss_complex(torch.view_as_real(torch.from_numpy(data)), dim=0).numpy(), expected)
    assert torch.isfinite(rss(torch.zeros(3, 2, 2), eps=1e-12)).all()


def test_center_crop_and_pad_keep_the_fft_centre():
    for width in (320, 321, 396, 397):
        image = np.zeros((400, width), np.float32)
        image[400 // 2, width // 2] = 1.0
        out = center_crop_or_pad(image, (384, 384))
        assert out.shape == (384, 384)
        assert out[192, 192] == 1.0 and out.sum() == 1.0
    tensor = torch.arange(12.0).view(3, 4)
    assert center_crop_or_pad(tensor, (3, 2)).tolist() == [[1, 2], [5, 6], [9, 10]]
