"""Coil compression: lossless at full size, most of the energy at fewer coils, commutes with the mask."""
from __future__ import annotations

import numpy as np
import pytest

from utils.data.compression import CoilCompressor, calibration_columns, fft_readout, ifft_readout
from utils.data.dataset import SliceDataset
from utils.data.masks import equispaced_mask
from utils.mri.acs import acs_bounds


def coil_rss(kspace: np.ndarray) -> np.ndarray:
    images = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    return np.sqrt((np.abs(images) ** 2).sum(axis=0))


def correlated_coils(coils=8, height=64, width=48, rank=3, seed=0) -> np.ndarray:
    """k-space of ``coils`` coils that are mixtures of ``rank`` smooth sources plus a little noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width] / np.array([height, width])[:, None, None]
    sources = np.stack([np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.05) for cx, cy in rng.uniform(0.2, 0.8, (rank, 2))])
    obj = (((x - 0.5) ** 2 + (y - 0.5) ** 2) < 0.15).astype(float)
    mixing = rng.standard_normal((coils, rank)) + 1j * rng.standard_normal((coils, rank))
    images = np.einsum("cr,rhw->chw", mixing, sources) * obj
    images += 1e-3 * (rng.standard_normal(images.shape) + 1j * rng.standard_normal(images.shape))
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(images, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)).astype(np.complex64)


@pytest.mark.parametrize("method", ("scc", "gcc"))
def test_compressing_to_the_same_number_of_coils_loses_nothing(method):
    kspace = correlated_coils(coils=6, rank=6)
    mask = equispaced_mask(kspace.shape[-1], 4, 12)
    compressed = CoilCompressor(method, num_coils=6, calibration_lines=12)(kspace, mask)
    assert compressed.shape == kspace.shape and not np.allclose(compressed, kspace)  # a real change of basis
    np.testing.assert_allclose(coil_rss(compressed), coil_rss(kspace), rtol=1e-4, atol=1e-6 * coil_rss(kspace).max())
    fewer = kspace[:4]
    assert CoilCompressor(method, num_coils=6)(fewer, mask) is fewer  # fewer coils than asked: unchanged


@pytest.mark.parametrize("method", ("scc", "gcc"))
def test_fewer_virtual_coils_keep_most_of_the_energy_on_generated_data(method, tiny_data):
    raw = SliceDataset(tiny_data / "train").read_raw(0)
    kspace, mask = raw.kspace, raw.mask
    compressed = CoilCompressor(method, num_coils=kspace.shape[0] - 1, calibration_lines=24)(kspace, mask)
    kept = (np.abs(compressed) ** 2).sum() / (np.abs(kspace) ** 2).sum()
    assert 0.9 < kept <= 1.0 + 1e-6
    error = np.linalg.norm(coil_rss(compressed) - coil_rss(kspace)) / np.linalg.norm(coil_rss(kspace))
    assert error < 0.1


def test_low_rank_coils_compress_to_their_rank_almost_losslessly_and_gcc_beats_scc_on_real_geometry(tiny_data):
    kspace = correlated_coils(coils=8, rank=3)
    mask = equispaced_mask(kspace.shape[-1], 4, 12)
    for method in ("scc", "gcc"):
        compressed = CoilCompressor(method, num_coils=3, calibration_lines=12)(kspace, mask)
        assert (np.abs(compressed) ** 2).sum() / (np.abs(kspace) ** 2).sum() > 0.999
    raw = SliceDataset(tiny_data / "train").read_raw(0)
    kept = {
        method: (np.abs(CoilCompressor(method, num_coils=2)(raw.kspace, raw.mask)) ** 2).sum() for method in ("scc", "gcc")
    }
    assert kept["gcc"] > kept["scc"]


@pytest.mark.parametrize("method", ("scc", "gcc"))
def test_compression_commutes_with_the_mask_and_uses_only_sampled_centre_lines(method):
    kspace = correlated_coils(coils=8, rank=4)
    mask = equispaced_mask(kspace.shape[-1], 4, 12)
    compressor = CoilCompressor(method, num_coils=4, calibration_lines=8)
    np.testing.assert_allclose(compressor(kspace * mask, mask), compressor(kspace, mask) * mask, atol=1e-5)
    columns = calibration_columns(mask, 8)
    start, stop = acs_bounds(mask)
    assert start <= columns.start and columns.stop <= stop and columns.stop - columns.start == 8
    changed = kspace.copy()
    changed[..., mask == 0] *= 3  # unsampled columns never influence the compression
    np.testing.assert_allclose(compressor(changed * mask, mask), compressor(kspace * mask, mask), atol=1e-5)


def test_readout_transforms_are_inverse_centred_orthonormal_ffts():
    kspace = correlated_coils()
    np.testing.assert_allclose(fft_readout(ifft_readout(kspace)), kspace, atol=1e-5)
    expected = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(kspace, axes=1), axis=1, norm="ortho"), axes=1)
    np.testing.assert_allclose(ifft_readout(kspace), expected, atol=1e-6)


def test_bad_compressor_settings_are_refused():
    with pytest.raises(ValueError, match="method must be one of"):
        CoilCompressor("pca")
    with pytest.raises(ValueError, match="odd window"):
        CoilCompressor("gcc", window=4)
