"""Batch samplers and the masked training losses."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from utils.data.sampler import ShapeGroupedBatchSampler, volume_batches
from utils.metrics.foreground import foreground_mask
from utils.metrics.ssim import ssim
from utils.training.losses import MaskedL1Loss, MaskedSSIML1Loss, MaskedSSIMLoss, area_weights

SHAPES = [(4, 768, 396)] * 5 + [(4, 640, 368)] * 4 + [(15, 640, 368)] * 3


def test_batches_hold_one_shape_and_cover_every_example_once():
    sampler = ShapeGroupedBatchSampler(SHAPES, batch_size=2, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3 + 2 + 2
    assert sorted(i for batch in batches for i in batch) == list(range(len(SHAPES)))
    assert all(len({SHAPES[i] for i in batch}) == 1 for batch in batches)


def test_order_depends_on_seed_and_epoch_only():
    first = ShapeGroupedBatchSampler(SHAPES, batch_size=1, seed=3)
    again = ShapeGroupedBatchSampler(SHAPES, batch_size=1, seed=3)
    assert list(first) == list(again)
    first.set_epoch(1)
    assert list(first) != list(again)
    again.set_epoch(1)
    assert list(first) == list(again)


def test_shards_are_disjoint_equal_and_cover_the_epoch():
    shards = [list(ShapeGroupedBatchSampler(SHAPES, 1, seed=0, num_replicas=2, rank=rank)) for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 6
    assert sorted(i for shard in shards for batch in shard for i in batch) == list(range(len(SHAPES)))


def test_volume_batches_stay_inside_a_volume_and_keep_order():
    volumes = [0, 0, 0, 1, 1, 2]
    assert volume_batches(volumes, 2) == [[0, 1], [2], [3, 4], [5]]
    assert volume_batches(volumes, 1) == [[i] for i in range(6)]


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    target = ((yy - 32) ** 2 + (xx - 32) ** 2 < 400) * 4e-4 + rng.random((2, 64, 64)) * 1e-5
    target = torch.from_numpy(target.astype(np.float32))
    fg_mask = torch.from_numpy(foreground_mask(target.numpy(), "brain"))
    output = target + torch.from_numpy(rng.normal(scale=3e-5, size=target.shape).astype(np.float32))
    return output, target, fg_mask, torch.tensor([4e-4, 5e-4], dtype=torch.float64)


def test_losses_are_zero_for_a_perfect_output(images):
    _, target, fg_mask, max_value = images
    for loss in (MaskedSSIMLoss(), MaskedL1Loss(), MaskedSSIML1Loss()):
        assert loss(target, target, fg_mask, max_value).item() == pytest.approx(0.0, abs=1e-6)


def test_ssim_loss_is_one_minus_the_leaderboard_score(images):
    output, target, fg_mask, max_value = images
    expected = 1 - ssim(output * fg_mask, target * fg_mask, max_value).mean()
    assert MaskedSSIMLoss()(output, target, fg_mask, max_value).item() == pytest.approx(expected.item(), abs=1e-6)


def test_l1_counts_only_the_foreground_in_units_of_the_max(images):
    _, target, fg_mask, max_value = images
    shifted = target + 1e-4 * fg_mask + 1.0 * (1 - fg_mask)  # huge errors outside the mask are ignored
    fraction = fg_mask.numpy().mean(axis=(-2, -1))
    per_slice = 1e-4 / max_value.numpy()
    # the entry's L1: the masked error averaged over all pixels; the "foreground" option: over the foreground
    assert MaskedL1Loss()(shifted, target, fg_mask, max_value).item() == pytest.approx((per_slice * fraction).mean(), rel=1e-4)
    foreground = MaskedL1Loss("foreground")(shifted, target, fg_mask, max_value).item()
    assert foreground == pytest.approx(per_slice.mean(), rel=1e-4)
    combined = MaskedSSIML1Loss(ssim_weight=0.0, l1_weight=2.0, l1_normalisation="foreground")(shifted, target, fg_mask, max_value)
    assert combined.item() == pytest.approx(2 * foreground, rel=1e-4)
    with pytest.raises(ValueError, match="l1_normalisation"):
        MaskedL1Loss("pixels")


def test_validation_total_is_the_leaderboards_mean_of_the_acceleration_means():
    from utils.metrics.score import SliceScore, leaderboard_total

    # three acc4 slices and one acc8 slice: the leaderboard weighs acc4 and acc8 equally, not the slices
    records = [(4, "brain", 0.9, 0.8), (4, "knee", 0.8, 0.7), (4, "brain", 1.0, 0.9), (8, "knee", 0.5, 0.4)]
    scores = [SliceScore(acc, anatomy, f"{anatomy}_acc{acc}_1.h5", i, ssim, zero_filled_ssim=zf) for i, (acc, anatomy, ssim, zf) in enumerate(records)]
    assert leaderboard_total(scores) == pytest.approx((np.mean([0.9, 0.8, 1.0]) + 0.5) / 2)
    assert leaderboard_total(scores, "zero_filled_ssim") == pytest.approx((np.mean([0.8, 0.7, 0.9]) + 0.4) / 2)
    assert leaderboard_total(scores[:3]) == pytest.approx(0.9)  # one acceleration: its mean


def _official_map(x: np.ndarray, y: np.ndarray, data_range: float) -> np.ndarray:
    """The SSIM map of the 2026 script written out independently (tests/harness_2026.py's formula, in float64)."""
    from utils.evaluation.official_reference_2026 import _ssim_map
    from utils.evaluation.official_reference import OfficialSSIM

    ssim_module = OfficialSSIM().double()
    return _ssim_map(ssim_module, torch.from_numpy(x).double(), torch.from_numpy(y).double(), data_range).numpy()


def test_bbox_weight_adds_one_minus_the_ssim_inside_the_boxes_of_the_slices_that_have_them():
    rng = np.random.default_rng(0)
    target = rng.random((3, 64, 64)).astype(np.float32)
    output = (target + 0.1 * rng.standard_normal(target.shape)).astype(np.float32)
    fg_mask = np.ones_like(target)
    box_mask = np.zeros_like(target)
    box_mask[0, 10:30, 20:40] = 1  # slice 0 has a box, slice 1 two, slice 2 none
    box_mask[1, 5:15, 5:25] = box_mask[1, 40:60, 30:50] = 1
    tensors = [torch.from_numpy(a) for a in (output, target, fg_mask)] + [torch.ones(3, dtype=torch.float64)]
    plain = MaskedSSIML1Loss()(*tensors)
    weighted = MaskedSSIML1Loss(bbox_weight=0.5)(*tensors, torch.from_numpy(box_mask))
    expected = []
    for index in (0, 1):  # the map averaged over the box pixels of the valid region
        valid = box_mask[index, 3:-3, 3:-3]
        expected.append(1 - (_official_map(output[index], target[index], 1.0) * valid).sum() / valid.sum())
    assert float(weighted - plain) == pytest.approx(0.5 * np.mean(expected), rel=1e-5)
    no_boxes = MaskedSSIML1Loss(bbox_weight=0.5)(*tensors, torch.zeros_like(torch.from_numpy(box_mask)))
    assert float(no_boxes) == pytest.approx(float(plain))
    with pytest.raises(ValueError, match="bbox_weight"):
        MaskedSSIMLoss(bbox_weight=-1)


def _square_mask(side: int) -> np.ndarray:
    """A 384 x 384 foreground mask whose foreground is a centred ``side`` x ``side`` square."""
    mask = np.zeros((384, 384), np.float32)
    start = (384 - side) // 2
    mask[start : start + side, start : start + side] = 1.0
    return mask


@pytest.fixture
def two_fractions():
    """A batch of two slices with foreground fractions 1/4 and 1/16 and a known error inside the foreground."""
    masks = np.stack([_square_mask(192), _square_mask(96)])
    rng = np.random.default_rng(1)
    target = (rng.random((2, 384, 384)) * 4e-4 + 1e-4).astype(np.float32)
    error = np.array([2e-5, 5e-5], np.float32)[:, None, None]
    output = target + error  # everywhere; only the foreground counts
    max_value = np.array([5e-4, 6e-4])
    as_torch = (torch.from_numpy(output), torch.from_numpy(target), torch.from_numpy(masks), torch.from_numpy(max_value))
    return as_torch, masks, error[:, 0, 0], max_value


def test_area_weight_none_leaves_every_loss_unchanged(images):
    for loss, weighted in ((MaskedSSIMLoss(), MaskedSSIMLoss(area_weight="none")), (MaskedL1Loss(), MaskedL1Loss(area_weight="none")),
                           (MaskedSSIML1Loss(), MaskedSSIML1Loss(area_weight="none"))):
        assert torch.equal(weighted(*images), loss(*images))
        assert torch.equal(loss(*images), loss.per_slice(*images).mean())


def test_area_weight_sqrt_weighs_slices_by_the_root_of_their_foreground_fraction(two_fractions):
    batch, masks, error, max_value = two_fractions
    fractions = masks.mean(axis=(-2, -1))
    assert fractions.tolist() == [0.25, 0.0625]
    weights = np.sqrt(fractions)  # [1/2, 1/4]
    np.testing.assert_allclose(area_weights(batch[2]).numpy(), [0.5, 0.25], rtol=1e-6)
    # the entry's L1 of each slice, by hand: |error| over the foreground pixels, averaged over all 384 x 384 pixels
    per_slice = np.abs(error) * fractions / max_value
    expected = (weights * per_slice).mean()
    assert MaskedL1Loss(area_weight="sqrt")(*batch).item() == pytest.approx(expected, rel=1e-5)
    assert MaskedL1Loss()(*batch).item() == pytest.approx(per_slice.mean(), rel=1e-5)  # unweighted: differs
    assert not np.isclose(expected, per_slice.mean(), rtol=1e-2)
    combined = MaskedSSIML1Loss(area_weight="sqrt")
    ssim_per_slice = MaskedSSIMLoss().per_slice(*batch).double().numpy()
    assert combined(*batch).item() == pytest.approx((weights * (ssim_per_slice + per_slice)).mean(), rel=1e-5)
    assert area_weights(torch.zeros(3, 8, 8)).tolist() == [0.0, 0.0, 0.0]  # no foreground: no loss to weigh anyway
    one = tuple(tensor[1:] for tensor in batch)  # batch size 1 (the entry's): the slice still gets its weight
    assert MaskedL1Loss(area_weight="sqrt")(*one).item() == pytest.approx(0.25 * per_slice[1], rel=1e-5)
    with pytest.raises(ValueError, match="area_weight must be one of"):
        MaskedSSIMLoss(area_weight="linear")


def test_every_loss_config_offers_area_weight():
    from tests.conftest import compose_config
    from utils.errors import UserInputError
    from utils.training.build import build_loss, check_config

    for name in ("ssim", "l1", "ssim_l1"):
        cfg = compose_config("demo", [f"loss={name}", "data.batch_size=2"])
        assert cfg.loss.area_weight == "none" and build_loss(cfg.loss).area_weight == "none"
        check_config(compose_config("demo", [f"loss={name}", "data.batch_size=2", "loss.area_weight=sqrt"]))
        assert build_loss(compose_config("demo", [f"loss={name}", "loss.area_weight=sqrt"]).loss).area_weight == "sqrt"
    check_config(compose_config("demo", ["loss.area_weight=sqrt"]))  # batch size 1 too
    with pytest.raises(UserInputError, match="area_weight must be one of"):
        build_loss(compose_config("demo", ["loss.area_weight=cube"]).loss)
