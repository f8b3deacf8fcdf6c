"""Challenge masks and the GRAPPA reconstruction the simulator stores as image_grappa."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from utils.data.masks import equispaced_mask
from utils.mri.acs import acs_bounds
from utils.mri.coils import rss
from utils.mri.fft import fft2c, ifft2c
from utils.mri.grappa import grappa_reconstruct, grid_offset


@pytest.mark.parametrize("width,acceleration", [(320, 4), (396, 8), (480, 4), (368, 8)])
def test_equispaced_mask_has_spacing_and_centre_block(width, acceleration):
    mask = equispaced_mask(width, acceleration, offset=acceleration - 1)
    assert mask.shape == (width,) and mask.dtype == np.float32
    start, stop = acs_bounds(mask)
    assert 26 <= stop - start <= 39 + acceleration  # the centre block, possibly touching a grid line
    outside = np.flatnonzero(mask)
    outside = outside[(outside < start) | (outside >= stop)]
    assert np.all(np.diff(outside) % acceleration == 0)  # equispaced on both sides of the centre block
    assert np.all(outside % acceleration == acceleration - 1)
    assert grid_offset(mask, acceleration) == acceleration - 1
    assert acceleration / 2 < width / mask.sum() < acceleration


def test_acs_bounds_requires_a_sampled_centre():
    mask = np.zeros(10)
    with pytest.raises(ValueError):
        acs_bounds(mask)
    mask[3:7] = 1
    assert acs_bounds(mask) == (3, 7)


def _phantom_kspace(num_coils: int = 8, height: int = 160, width: int = 320) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    image = ((yy - height / 2) ** 2 / 60**2 + (xx - width / 2) ** 2 / 110**2 < 1) * (1 + 0.3 * np.sin(xx / 5))
    angles = 2 * np.pi * np.arange(num_coils) / num_coils
    sens = np.stack(
        [np.exp(-((yy - height / 2 - 90 * np.sin(a)) ** 2 + (xx - width / 2 - 150 * np.cos(a)) ** 2) / 120**2) * np.exp(1j * a) for a in angles]
    )
    return fft2c(torch.from_numpy((sens * image).astype(np.complex64))).numpy()


def _rss_image(kspace: np.ndarray) -> np.ndarray:
    return rss(ifft2c(torch.from_numpy(kspace.astype(np.complex64))), dim=0).numpy()


@pytest.mark.parametrize("acceleration,max_error_ratio", [(4, 0.6), (8, 0.95)])
def test_grappa_beats_zero_filling_and_keeps_sampled_columns(acceleration, max_error_ratio):
    kspace = _phantom_kspace()
    mask = equispaced_mask(kspace.shape[-1], acceleration, offset=1)
    undersampled = kspace * mask
    filled = grappa_reconstruct(undersampled, mask, acceleration)
    np.testing.assert_array_equal(filled[..., mask > 0], undersampled[..., mask > 0])
    reference = _rss_image(kspace)
    error_grappa = np.linalg.norm(_rss_image(filled) - reference)
    error_zero_filled = np.linalg.norm(_rss_image(undersampled) - reference)
    assert error_grappa < max_error_ratio * error_zero_filled  # a 2x3 kernel gains little at R = 8
