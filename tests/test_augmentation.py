"""Mask types, the augmentation schedule, MRAugment, mask duplication and the training transform."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from utils.data.augment import AugmentSchedule, ImageAugment, MaskAugment, TrainingTransform
from utils.data.augment.mraugment import ImageAugmentParams, augment_coil_images, augment_kspace, draw_params
from utils.data.dataset import SliceDataset
from utils.data.mask_types import MASK_TYPES, sample_mask
from utils.data.masks import equispaced_mask
from utils.mri.acs import acs_bounds
from utils.mri.crop import center_crop_or_pad

WIDTHS = (320, 368, 396, 401)


def numpy_coil_images(kspace: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def numpy_target(coil_images: np.ndarray) -> np.ndarray:
    rss = np.sqrt((np.abs(coil_images) ** 2).sum(axis=0))
    top, left = (rss.shape[0] - 384) // 2, (rss.shape[1] - 384) // 2
    return rss[top : top + 384, left : left + 384]


# --- mask types -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", MASK_TYPES)
@pytest.mark.parametrize("acceleration", (4, 8))
def test_every_mask_type_has_a_centre_block_and_the_requested_acceleration(kind, acceleration):
    rng = np.random.default_rng(0)
    ratios = []
    for width in WIDTHS:
        for center_fraction in (0.07, 0.085, 0.10):
            mask = sample_mask(kind, width, acceleration, center_fraction, rng)
            assert mask.shape == (width,) and mask.dtype == np.float32 and set(np.unique(mask)) <= {0.0, 1.0}
            start, stop = acs_bounds(mask)  # raises if the DC column is not sampled
            expected_block = round(width * center_fraction)
            if kind == "magic_fraction":
                expected_block = min(expected_block, round(width / acceleration))
            assert stop - start >= expected_block
            ratios.append(width / mask.sum())
            if kind in ("equispaced", "magic"):  # centre block plus every acc-th of the other columns
                outside = (width - expected_block) / acceleration
                assert expected_block + outside - 2 <= mask.sum() <= expected_block + outside + 2
    ratios = np.array(ratios)
    if kind in ("equispaced", "magic"):  # the centre block comes on top: below the nominal acceleration
        assert (ratios < acceleration).all()
    elif kind == "random":  # acceleration on average
        assert abs(ratios.mean() - acceleration) < 0.12 * acceleration
    elif kind == "equispaced_fraction":  # matches the acceleration up to rounding
        assert np.abs(ratios - acceleration).max() < 0.05 * acceleration
    else:  # magic_fraction: fastMRI rounds the spacing to an integer and some lines land in the centre block
        assert (ratios > 0.95 * acceleration).all() and (ratios < 1.15 * acceleration).all()


@pytest.mark.parametrize("kind", ("equispaced", "magic"))
def test_equispaced_and_magic_lines_keep_the_nominal_spacing_outside_the_centre(kind):
    width, acceleration = 396, 4
    mask = sample_mask(kind, width, acceleration, 0.08, np.random.default_rng(1))
    start, stop = acs_bounds(mask)
    for side in (np.flatnonzero(mask[:start]), np.flatnonzero(mask[stop:])):
        assert set(np.diff(side)) == {acceleration}


def mirror_gain(mask: np.ndarray) -> float:
    """New outer columns that conjugate symmetry (column k <-> W - k about DC = W // 2, even W) would add,
    as a fraction of the sampled outer columns."""
    width = mask.shape[0]
    start, stop = acs_bounds(mask)
    outer = np.ones(width, bool)
    outer[start:stop] = False
    sampled = np.flatnonzero(mask > 0)
    mirrored = np.zeros(width, bool)
    mirrored[(width - sampled)[(width - sampled) < width]] = True
    return ((mirrored & (mask == 0) & outer).sum()) / (mask[outer] > 0).sum()


def test_magic_masks_sample_the_mirror_lines_that_challenge_masks_repeat():
    """Offset sampling: mirrored (conjugate-symmetric) columns fill gaps instead of repeating sampled ones."""
    for seed in range(8):
        assert mirror_gain(sample_mask("magic", 396, 4, 0.08, np.random.default_rng(seed))) > 0.9
    assert mirror_gain(equispaced_mask(396, 4)) < 0.05  # offset 0: the mirror of every line is sampled already


def test_masks_are_reproducible_from_the_generator():
    for kind in MASK_TYPES:
        a = sample_mask(kind, 396, 8, 0.08, np.random.default_rng(7))
        b = sample_mask(kind, 396, 8, 0.08, np.random.default_rng(7))
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="unknown mask type"):
        sample_mask("poisson", 396, 4, 0.08, np.random.default_rng(0))


# --- schedule ---------------------------------------------------------------------------------------------

def test_schedules_follow_their_definitions():
    ramp = AugmentSchedule("ramp", strength=0.7, delay_epochs=5, total_epochs=39)
    assert [ramp.probability(e) for e in (0, 4, 5)] == [0.0, 0.0, 0.0]
    assert ramp.probability(38) == pytest.approx(0.7) and ramp.probability(50) == pytest.approx(0.7)
    assert ramp.probability(5 + 33 // 2) == pytest.approx(0.7 * (33 // 2) / 33)
    delay = AugmentSchedule("delay", strength=0.5, delay_epochs=3, total_epochs=10)
    assert [delay.probability(e) for e in (2, 3, 9)] == [0.0, 0.5, 0.5]
    assert AugmentSchedule("constant", strength=0.3, delay_epochs=3).probability(0) == 0.3
    exp = AugmentSchedule("exp", strength=0.6, delay_epochs=0, total_epochs=11, exp_rate=5.0)
    values = [exp.probability(e) for e in range(11)]
    assert values[0] == 0.0 and values[-1] == pytest.approx(0.6) and all(np.diff(values) > 0)
    assert values[5] - values[0] > values[10] - values[5]  # rises fast, then levels off
    assert values[5] == pytest.approx(0.6 * (1 - np.exp(-2.5)) / (1 - np.exp(-5.0)))
    with pytest.raises(ValueError, match="schedule must be one of"):
        AugmentSchedule("cosine")


# --- MRAugment --------------------------------------------------------------------------------------------

def random_kspace(coils=3, height=400, width=390, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((coils, height, width)) + 1j * rng.standard_normal((coils, height, width))).astype(np.complex64)


def test_identity_augmentation_returns_the_input_and_its_rss_target():
    kspace = random_kspace()
    augmented, target = augment_kspace(kspace, ImageAugmentParams())
    np.testing.assert_allclose(augmented, kspace, atol=1e-4 * np.abs(kspace).max())
    np.testing.assert_allclose(target, numpy_target(numpy_coil_images(kspace)), rtol=1e-4)


def test_flips_rotations_and_shifts_move_coil_images_exactly_and_the_target_follows():
    kspace = random_kspace(height=392, width=392)
    images = numpy_coil_images(kspace)
    cases = [
        (ImageAugmentParams(flip_h=True), images[..., ::-1]),
        (ImageAugmentParams(flip_v=True), images[..., ::-1, :]),
        (ImageAugmentParams(rotation_deg=90.0), np.rot90(images, k=-1, axes=(-2, -1))),
        (ImageAugmentParams(translation=(3.0, -2.0)), np.roll(images, (-2, 3), axis=(-2, -1))),
    ]
    for params, expected in cases:
        augmented, target = augment_kspace(kspace, params)
        result = numpy_coil_images(augmented)
        inner = (slice(None), slice(8, -8), slice(8, -8))  # away from the borders that reflection fills
        np.testing.assert_allclose(result[inner], expected[inner], atol=1e-4 * np.abs(images).max(), err_msg=str(params))
        np.testing.assert_allclose(target, numpy_target(result), rtol=1e-4, atol=1e-6)


def test_scaling_enlarges_the_object_about_the_centre():
    height = width = 128
    y, x = np.mgrid[:height, :width] - 64
    disc = ((x**2 + y**2) < 20**2).astype(np.complex64)[None]
    images = augment_coil_images(torch.from_numpy(disc), ImageAugmentParams(scale=1.5))
    area = (images.abs() > 0.5).sum().item()
    assert area == pytest.approx(np.pi * 30**2, rel=0.05)


def test_augmentation_draws_depend_only_on_the_generator_and_probability():
    weights = dict.fromkeys(("flip_h", "flip_v", "rotation", "scaling", "translation", "shear"), 1.0)
    args = (weights, (768, 396), 15.0, (0.85, 1.15), (0.125, 0.08), 10.0)
    assert draw_params(np.random.default_rng(3), 0.0, *args).is_identity
    assert draw_params(np.random.default_rng(3), 1.0, *args) == draw_params(np.random.default_rng(3), 1.0, *args)
    draws = [draw_params(np.random.default_rng(seed), 1.0, *args) for seed in range(50)]
    assert all(abs(d.rotation_deg) <= 15 and 0.85 <= d.scale <= 1.15 and abs(d.translation[0]) <= 0.125 * 396 for d in draws)
    assert all(d.flip_h and d.flip_v for d in draws)  # weight 1 at probability 1: always
    halved = [draw_params(np.random.default_rng(seed), 0.5, *args) for seed in range(100)]
    assert 30 < sum(d.flip_h for d in halved) < 70 and 30 < sum(d.scale != 1.0 for d in halved) < 70


# --- duplication and the training transform on generated data ----------------------------------------------

def test_mask_duplication_gives_every_slice_at_acc4_and_acc8(tiny_data):
    plain = SliceDataset(tiny_data / "train")
    duplicated = SliceDataset(tiny_data / "train", accelerations=(4, 8))
    assert len(duplicated) == 2 * len(plain)
    for index in range(len(plain)):
        file_sample = plain.read_raw(index)
        at = {duplicated.read_raw(2 * index + k).acceleration: duplicated.read_raw(2 * index + k) for k in (0, 1)}
        assert set(at) == {4, 8}
        np.testing.assert_array_equal(at[file_sample.acceleration].mask, file_sample.mask)
        other = 12 - file_sample.acceleration
        np.testing.assert_array_equal(at[other].mask, equispaced_mask(file_sample.mask.shape[-1], other))
        np.testing.assert_array_equal(at[other].target, file_sample.target)


def test_training_transform_is_deterministic_and_recomputes_the_target(tiny_data):
    transform = TrainingTransform(AugmentSchedule("constant", 1.0), ImageAugment(), MaskAugment())
    dataset = SliceDataset(tiny_data / "train", transform, seed=3)
    plain = SliceDataset(tiny_data / "train")
    dataset.set_epoch(2)
    first = [dataset[i] for i in range(len(dataset))]
    again = [dataset[i] for i in range(len(dataset))]
    assert all(torch.equal(a.masked_kspace, b.masked_kspace) and torch.equal(a.target, b.target) for a, b in zip(first, again))
    changed_targets = changed_masks = 0
    for index, sample in enumerate(first):
        reference = plain[index]
        changed_targets += not torch.equal(sample.target, reference.target)
        changed_masks += not torch.equal(sample.mask, reference.mask)
        assert sample.fg_mask.shape == (384, 384) and sample.fg_mask.sum() > 0
    assert changed_targets >= len(first) // 2 and changed_masks >= len(first) // 2
    dataset.set_epoch(3)
    assert any(not torch.equal(dataset[i].masked_kspace, first[i].masked_kspace) for i in range(len(dataset)))
    assert transform.state_dict() == {"epoch": 3, "probability": 1.0}


def test_augmented_target_is_the_rss_of_the_augmented_kspace(tiny_data):
    raw = SliceDataset(tiny_data / "train").read_raw(0)
    params = ImageAugmentParams(flip_h=True, rotation_deg=7.0, scale=1.1, translation=(4.0, -3.0), shear_deg=(2.0, -1.0))
    kspace, target = augment_kspace(raw.kspace, params)
    np.testing.assert_allclose(target, numpy_target(numpy_coil_images(kspace.astype(np.complex128))), rtol=1e-3, atol=1e-3 * target.max())
    assert not np.allclose(target, raw.target, atol=0.05 * raw.target.max())


def test_mask_types_are_drawn_with_the_entrys_weights(monkeypatch):
    import utils.data.augment.transform as transform_module
    from utils.data.transforms import RawSlice

    drawn = []
    monkeypatch.setattr(transform_module, "sample_mask", lambda kind, *args: drawn.append(kind) or np.ones(8, np.float32))
    raw = RawSlice(np.zeros((1, 4, 8), np.complex64), np.ones(8, np.float32), None, 1.0, "f.h5", 0, "brain", 4)
    rng = np.random.default_rng(0)
    for _ in range(8000):
        MaskAugment().draw(rng, 1.0, raw)
    counts = {kind: drawn.count(kind) / len(drawn) for kind in MASK_TYPES}
    assert counts == pytest.approx({"equispaced": 0.25, "equispaced_fraction": 0.25, "random": 0.25, "magic": 0.125, "magic_fraction": 0.125}, abs=0.02)
    drawn.clear()
    for _ in range(50):
        MaskAugment(weights={"random": 0.0, "magic": 2.0}).draw(rng, 1.0, raw)
    assert set(drawn) == {"magic"}
    with pytest.raises(ValueError, match="mask weights"):
        MaskAugment(weights={"poisson": 1.0})
    with pytest.raises(ValueError, match="mask weights"):
        MaskAugment(weights={"random": 0.0})


def test_the_box_mask_moves_with_the_lesion():
    """A bright square in the coil images, its box in the target's 384 space: after a flip, a rotation and a shift,
    the warped box mask still covers the bright square of the augmented target."""
    from utils.data.augment.mraugment import ImageAugmentParams, augment_box_mask, augment_kspace
    from utils.data.annotations import Box, box_mask
    from utils.mri.fft import fft2c

    height, width = 400, 372
    images = torch.full((2, height, width), 0.1, dtype=torch.complex64)
    images[:, 150:180, 220:250] = 1.0  # rows 150..179, columns 220..249 of the grid
    kspace = fft2c(images).numpy()
    shift_h, shift_w = 384 // 2 - height // 2, 384 // 2 - width // 2  # where the centre crop puts grid pixels
    box = Box(220 + shift_w, 150 + shift_h, 30, 30)
    for params in (ImageAugmentParams(flip_h=True), ImageAugmentParams(flip_v=True, rotation_deg=12.0, translation=(9.0, -5.0))):
        _, target = augment_kspace(kspace, params)
        moved = augment_box_mask(box_mask([box]).astype(np.float32), params, (height, width))
        bright = target > 0.5 * target.max()
        assert (moved[bright] > 0).mean() > 0.95 and moved.sum() == pytest.approx(900, rel=0.1)


# --- per-anatomy MRAugment settings ------------------------------------------------------------------------

def _flip_only(brain: float, knee: float) -> TrainingTransform:
    """A transform that only flips left-right, with the given weights per anatomy, at probability 1."""
    from omegaconf import OmegaConf

    from utils.training.build import build_train_transform

    node = {"schedule": {"kind": "constant", "strength": 1.0}, "mask": None,
            "image": {"weights": {"flip_h": 0.5}, "brain": {"weights": {"flip_h": brain}}, "knee": {"weights": {"flip_h": knee}}}}
    return build_train_transform(OmegaConf.create(node), 1, None)


@pytest.mark.parametrize("brain, knee", [(1.0, 0.0), (0.0, 1.0)])
def test_per_anatomy_settings_flip_one_anatomy_and_leave_the_other(tiny_data, brain, knee):
    transform = _flip_only(brain, knee)
    assert transform.image.weights == {"flip_h": 0.5}  # the shared settings, for an anatomy without its own
    dataset, plain = SliceDataset(tiny_data / "train", transform, seed=3), SliceDataset(tiny_data / "train")
    seen = set()
    for index in range(len(dataset)):
        raw, sample = plain.read_raw(index), dataset[index]
        coil_images = numpy_coil_images(raw.kspace.astype(np.complex128))[..., ::-1]  # flipped by hand, in numpy
        flipped = center_crop_or_pad(np.sqrt((np.abs(coil_images) ** 2).sum(axis=0)))  # knee widths < 384 are padded
        if {"brain": brain, "knee": knee}[raw.anatomy] == 1.0:
            np.testing.assert_allclose(sample.target.numpy(), flipped, rtol=1e-4, atol=1e-4 * flipped.max())
            assert not np.allclose(sample.target.numpy(), raw.target, atol=0.05 * raw.target.max())
        else:
            assert torch.equal(sample.target, plain[index].target) and torch.equal(sample.masked_kspace, plain[index].masked_kspace)
        seen.add(raw.anatomy)
        again = dataset[index]  # the draw is a function of (seed, epoch, example)
        assert torch.equal(again.target, sample.target) and torch.equal(again.masked_kspace, sample.masked_kspace)
    assert seen == {"brain", "knee"}


def test_the_shipped_per_anatomy_config_and_its_errors():
    from tests.conftest import compose_config
    from utils.errors import UserInputError
    from utils.training.build import build_train_transform

    transform = build_train_transform(compose_config("demo", ["augment=recipe_per_anatomy"]).augment, 39, None)
    recipe = build_train_transform(compose_config("demo", ["augment=recipe"]).augment, 39, None)
    assert transform.image == recipe.image and recipe.image_by_anatomy == {}
    for anatomy, flip in (("brain", 0.4), ("knee", 0.5)):  # only flip_h differs from the shared settings
        assert transform.image_by_anatomy[anatomy] == ImageAugment(**{**vars(recipe.image), "weights": {**recipe.image.weights, "flip_h": flip}})
    for override, key in (("+augment.image.prostate.weights.flip_h=0.4", "augment.image.prostate"),
                          ("+augment.image.brain.flip_probability=0.4", "augment.image.brain.flip_probability"),
                          ("+augment.image.knee.weights.flip_x=0.4", "augment.image.knee"),
                          ("augment.image.knee.weights.flip_h=1.5", "augment.image.knee")):
        with pytest.raises(UserInputError, match=key.replace(".", r"\.")) as error:
            build_train_transform(compose_config("demo", ["augment=recipe_per_anatomy", override]).augment, 39, None)
        assert "\n" not in str(error.value)
