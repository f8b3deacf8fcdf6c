"""Tests of the simulator's anatomy (MNI152 brain, procedural knee) and coil physics."""
from __future__ import annotations

import numpy as np
import pytest

from utils.data.synthetic import brain, coils
from utils.data.synthetic.brain import BRAIN_CONTRASTS, render_brain_volume
from utils.data.synthetic.knee import KNEE_CONTRASTS, render_knee_volume

BRAIN_GRID = (768, 396)
KNEE_GRID = (640, 368)


def _brain(seed: int, contrast: str = "T1", num_slices: int = 3) -> np.ndarray:
    return render_brain_volume(np.random.default_rng(seed), num_slices, BRAIN_GRID, 0.55, contrast)


def _knee(seed: int, contrast: str = "PD", num_slices: int = 3, grid=KNEE_GRID) -> np.ndarray:
    return render_knee_volume(np.random.default_rng(seed), num_slices, grid, 0.45, contrast)


@pytest.mark.parametrize("render", [_brain, _knee])
def test_same_seed_same_volume_different_seed_different(render):
    first, again, other = render(3), render(3), render(4)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("contrast", BRAIN_CONTRASTS)
def test_brain_shape_dtype_range_and_background(contrast):
    volume = _brain(0, contrast, num_slices=2)
    assert volume.shape == (2,) + BRAIN_GRID and volume.dtype == np.float32
    assert volume.min() >= 0.0 and volume.max() == pytest.approx(1.0, abs=1e-6)
    # corners and the oversampled ends of the readout are air
    assert np.all(volume[:, :100] == 0.0) and np.all(volume[:, -100:] == 0.0)
    assert np.all(volume[:, :, :10] == 0.0) and np.all(volume[:, :, -10:] == 0.0)
    assert np.all(volume.reshape(2, -1).max(axis=1) > 0.3), "every slice must cut through the head"


def test_brain_head_is_centred_in_the_central_half_of_the_readout():
    volume = _brain(1, "T2", num_slices=4)
    head = volume.max(axis=0) > 0
    rows = np.nonzero(head.any(axis=1))[0]
    cols = np.nonzero(head.any(axis=0))[0]
    height, width = BRAIN_GRID
    assert abs((rows.min() + rows.max()) / 2 - height / 2) < 0.05 * height
    assert abs((cols.min() + cols.max()) / 2 - width / 2) < 0.06 * width
    assert 0.35 * height < rows.max() - rows.min() < 0.62 * height  # head AP ~ 190 mm at 0.55 mm
    assert 0.6 * width < cols.max() - cols.min() < 0.98 * width


def test_brain_contrasts_follow_tissue_maps():
    template = brain._load_template()
    z = (template.valid_z[0] + template.valid_z[1]) / 2.0  # ventricles level
    gm, wm, mask = (brain._plane(volume, z) for volume in (template.gm, template.wm, template.mask))
    csf = np.clip(mask - gm - wm, 0.0, 1.0)

    def tissue_means(contrast):
        signal, _ = brain._brain_signal(template, z, brain._LEVELS[contrast])
        pad = brain._PAD_MM
        signal = signal[pad:-pad, pad:-pad]
        return {name: signal[weight > 0.8].mean() for name, weight in (("gm", gm), ("wm", wm), ("csf", csf))}

    t1, t2, flair = tissue_means("T1"), tissue_means("T2"), tissue_means("FLAIR")
    assert t1["wm"] > t1["gm"] > t1["csf"]
    assert t2["csf"] > t2["gm"] > t2["wm"]
    assert flair["gm"] > flair["wm"] > flair["csf"]


def test_knee_shape_dtype_background_and_fits_narrow_grid():
    volume = _knee(0, "PD", num_slices=2, grid=(640, 320))
    assert volume.shape == (2, 640, 320) and volume.dtype == np.float32
    assert volume.min() >= 0.0 and volume.max() == pytest.approx(1.0, abs=1e-6)
    leg = volume.max(axis=0) > 0
    assert not leg[:, :8].any() and not leg[:, -8:].any(), "the leg must fit within W = 320"
    widths = leg.sum(axis=1)
    assert np.all(widths > 0), "the leg runs through every row"
    assert 0.5 * 320 < widths.max() < 0.9 * 320


def test_knee_pd_and_pdfs_reverse_fat_and_fluid():
    pd, pdfs = _knee(5, "PD"), _knee(5, "PDFS")
    fatty = pd > 0.78  # subcutaneous fat and marrow in PD (fluid and cartilage are below ~0.72)
    assert fatty.sum() > 1000
    assert np.median(pdfs[fatty]) < 0.25
    fluid = pdfs > 0.85  # joint fluid in PDFS, dimmer than fat in PD
    if fluid.any():
        assert np.median(pd[fluid]) < 0.9


@pytest.mark.parametrize("contrast", KNEE_CONTRASTS)
def test_knee_has_all_tissue_levels(contrast):
    volume = _knee(2, contrast)
    values = volume[volume > 0]
    assert (values < 0.1).mean() > 0.005, "bone cortex, menisci and ligaments are near zero"
    assert 0.05 < np.median(values) < 0.8


@pytest.mark.parametrize("num_coils", [1, 4, 20])
@pytest.mark.parametrize("axial_extent_px", [None, 330.0])
def test_birdcage_shapes_and_normalisation(num_coils, axial_extent_px):
    grid, center = (768, 396), (384.0, 198.0)
    maps = coils.birdcage_sensitivities(np.random.default_rng(num_coils), num_coils, grid, center, 230.0,
                                        axial_extent_px)
    assert maps.shape == (num_coils,) + grid and maps.dtype == np.complex64
    assert np.all(np.isfinite(maps))
    rss = np.sqrt((np.abs(maps) ** 2).sum(axis=0))
    assert rss[384, 198] == pytest.approx(1.0, rel=0.02)
    assert rss.max() > 1.05, "real arrays keep an intensity bias towards the elements"
    again = coils.birdcage_sensitivities(np.random.default_rng(num_coils), num_coils, grid, center, 230.0,
                                         axial_extent_px)
    np.testing.assert_array_equal(maps, again)
    if axial_extent_px is not None:
        assert rss[5, 198] < 0.5 * rss[384, 198], "a knee coil barely sees the ends of the readout"


def test_smooth_phase_range_and_smoothness():
    phase = coils.smooth_phase(np.random.default_rng(0), (768, 396))
    assert phase.shape == (768, 396) and phase.dtype == np.float32
    assert np.abs(phase).max() <= np.pi + 1e-5
    assert np.abs(np.diff(phase, axis=0)).max() < 0.05 and np.abs(np.diff(phase, axis=1)).max() < 0.05


@pytest.mark.parametrize("num_coils", [1, 2, 16])
def test_noise_covariance_hermitian_positive_definite(num_coils):
    covariance = coils.noise_covariance(np.random.default_rng(num_coils), num_coils)
    assert covariance.shape == (num_coils, num_coils) and covariance.dtype == np.complex128
    np.testing.assert_allclose(covariance, covariance.conj().T, atol=1e-12)
    assert np.linalg.eigvalsh(covariance).min() > 0.1
    assert np.real(np.diag(covariance)).mean() == pytest.approx(1.0)
    std = np.sqrt(np.real(np.diag(covariance)))
    correlation = np.abs(covariance) / np.outer(std, std)
    np.fill_diagonal(correlation, 0.0)
    assert correlation.max() < 0.4


def test_correlated_noise_has_requested_covariance():
    rng = np.random.default_rng(7)
    covariance = coils.noise_covariance(rng, 8)
    sigma = 0.3
    noise = coils.correlated_noise(rng, (400, 500), covariance, sigma)
    assert noise.shape == (8, 400, 500) and noise.dtype == np.complex64
    samples = noise.reshape(8, -1)
    empirical = samples @ samples.conj().T / samples.shape[1]
    np.testing.assert_allclose(empirical, sigma**2 * covariance, atol=0.02 * sigma**2)
    # circular: the pseudo-covariance E[n n^T] vanishes and real / imaginary parts share the variance
    assert np.abs(samples @ samples.T / samples.shape[1]).max() < 0.02 * sigma**2
    assert np.var(samples.real) == pytest.approx(np.var(samples.imag), rel=0.02)
