"""The one SSIM against scikit-image, and the foreground mask against OpenCV called directly."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from utils.metrics.foreground import foreground_mask
from utils.metrics.ssim import masked_mean, ssim, ssim_map


def _skimage_ssim(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    return structural_similarity(
        x, y, win_size=7, gaussian_weights=False, use_sample_covariance=True, data_range=data_range, K1=0.01, K2=0.03
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ssim_equals_scikit_image(dtype):
    rng = np.random.default_rng(0)
    target = rng.random((3, 64, 80)) * 5e-4
    recon = target + rng.normal(scale=5e-5, size=target.shape)
    data_range = np.array([5e-4, 4e-4, 6e-4])
    ours = ssim(torch.from_numpy(recon).to(dtype), torch.from_numpy(target).to(dtype), torch.from_numpy(data_range))
    reference = [_skimage_ssim(recon[i], target[i], data_range[i]) for i in range(3)]
    np.testing.assert_allclose(ours.double().numpy(), reference, atol=1e-6, rtol=0)
    assert ours.dtype == dtype


def test_ssim_map_is_valid_convolution_and_identity_scores_one():
    image = torch.rand(2, 384, 384)
    values = ssim_map(image, image, 1.0)
    assert values.shape == (2, 378, 378)
    torch.testing.assert_close(ssim(image, image, 1.0), torch.ones(2))


def test_ssim_is_differentiable():
    x = torch.rand(1, 32, 32, requires_grad=True)
    y = torch.rand(1, 32, 32)
    ssim(x, y, 1.0).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_masked_mean_counts_only_the_valid_foreground():
    values = torch.zeros(1, 10, 10)
    values[0, :5] = 1.0
    mask = torch.zeros(1, 16, 16)
    mask[0, 3:8, 3:13] = 1  # valid-region rows 0..4 -> all ones in the map
    assert masked_mean(values, mask).item() == 1.0
    assert torch.isnan(masked_mean(values, torch.zeros(1, 16, 16))).all()


def _official_mask(target: np.ndarray, threshold: float) -> np.ndarray:
    mask = np.zeros(target.shape)
    mask[target > threshold] = 1
    kernel = np.ones((3, 3), np.uint8)
    mask = cv2.erode(mask, kernel, iterations=1)
    mask = cv2.dilate(mask, kernel, iterations=15)
    return cv2.erode(mask, kernel, iterations=14)


@pytest.mark.parametrize("anatomy,threshold", [("brain", 5e-5), ("knee", 2e-5)])
def test_foreground_mask_equals_opencv_per_slice(anatomy, threshold):
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:96, :96]
    blob = ((yy - 50) ** 2 / 900 + (xx - 40) ** 2 / 500 < 1) * 2 * threshold  # an object touching no border
    edge = (xx > 80) * 2 * threshold  # an object touching the border
    volume = np.stack([blob, edge, blob + edge, np.zeros_like(blob)]) + rng.random((4, 96, 96)) * 1.2 * threshold
    volume = volume.astype(np.float32)
    ours = foreground_mask(volume, anatomy)
    for index in range(volume.shape[0]):
        np.testing.assert_array_equal(ours[index], _official_mask(volume[index], threshold))
    np.testing.assert_array_equal(foreground_mask(volume[0], anatomy), ours[0])
    assert ours.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_ssim_formula_in_place_is_bitwise_the_tensor_formula(dtype):
    """The CPU scorer's in-place arithmetic on numpy arrays gives the very map the out-of-place tensor formula
    (the training loss's) gives, and leaves its inputs alone."""
    from utils.metrics.ssim_moments import ssim_from_moments

    rng = np.random.default_rng(7)
    x, y = rng.random((2, 60, 70)).astype(dtype) * 1e-3
    moments = [cv2.blur(image, (7, 7)) for image in (x, y, x * x, y * y, x * y)]
    copies = [moment.copy() for moment in moments]
    for c1, c2 in ((np.float32(1e-10), np.float32(9e-10)), (1e-10, 9e-10)):
        ours = ssim_from_moments(*moments, c1, c2)
        reference = ssim_from_moments(*(torch.from_numpy(moment) for moment in moments), c1, c2).numpy()
        assert ours.dtype == dtype and np.array_equal(ours, reference)
    assert all(np.array_equal(moment, copy) for moment, copy in zip(moments, copies))
