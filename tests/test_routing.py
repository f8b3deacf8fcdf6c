"""The acceleration rule of the routers (utils/experts/routing.py): challenge masks over SPEC §1's whole range,
the augmentation families, and ambiguous masks. No data needed."""
from __future__ import annotations

import numpy as np
import pytest

from utils.data.mask_types import MASK_TYPES, sample_mask
from utils.data.masks import center_block, equispaced_mask
from utils.experts.routing import acceleration_guess, line_spacing
from utils.mri.acs import acs_bounds


def _assert_right_and_sure(mask: np.ndarray, acceleration: int) -> None:
    guess = acceleration_guess(mask)
    assert (guess.value, guess.sure) == (acceleration, True), guess


@pytest.mark.parametrize("width", [320, 344])
def test_the_issue_cases_acc8_with_39_centre_lines_are_acc8_and_sure(width):
    for offset in range(8):
        mask = equispaced_mask(width, 8, num_low_frequencies=39, offset=offset)
        assert mask.mean() > 0.22  # above the old fraction boundary (0.2175) that sent them to acc4 as sure
        _assert_right_and_sure(mask, 8)


def _challenge_offsets(width: int, lines: int, acceleration: int) -> set[int]:
    """Offset 0 and the offsets whose equispaced lines touch the centre block on its left and on its right."""
    block = center_block(width, lines)
    return {0, (block.start - 1) % acceleration, block.stop % acceleration}


def test_every_challenge_mask_routes_right_and_sure():
    """SPEC §1: every width 320..480, centre blocks of 26..39 lines, both accelerations, lines touching the block."""
    for width in range(320, 481):
        for lines in range(26, 40):
            for acceleration in (4, 8):
                for offset in _challenge_offsets(width, lines, acceleration):
                    _assert_right_and_sure(equispaced_mask(width, acceleration, lines, offset), acceleration)


def test_lines_touching_the_centre_block_join_it():
    width, lines = 400, 32
    block = center_block(width, lines)
    mask = equispaced_mask(width, 8, lines, offset=(block.start - 1) % 8)
    assert acs_bounds(mask) == (block.start - 1, block.stop)
    spacing = line_spacing(mask)
    assert spacing.block == lines + 1 and spacing.step == 8


@pytest.mark.parametrize("kind", MASK_TYPES)
def test_augmentation_families_are_never_wrong_and_sure(kind):
    rng = np.random.default_rng(430)
    for acceleration in (4, 8):
        for width in range(320, 481, 4):
            for _ in range(3):
                guess = acceleration_guess(sample_mask(kind, width, acceleration, rng.uniform(0.07, 0.10), rng))
                assert guess.value == acceleration or not guess.sure, (kind, width, guess)
                if kind != "random":  # the deterministic families are decided, not merely flagged
                    assert (guess.value, guess.sure) == (acceleration, True), (kind, width, guess)


def test_a_step_that_is_neither_4_nor_8_is_unsure_unless_a_fraction_family_draws_it():
    for step in (3, 12):  # no family at either acceleration spaces its lines so with an 8 % centre block
        guess = acceleration_guess(equispaced_mask(400, step, 32))
        assert not guess.sure and "no step of 4 or 8, and the line count fits neither" in guess.why, guess
    magic_fraction_acc4 = equispaced_mask(400, 6, 32)  # total 0.235: what magic_fraction draws at acc4 with this block
    guess = acceleration_guess(magic_fraction_acc4)
    assert (guess.value, guess.sure) == (4, True) and "every 6 columns" in guess.why


def test_a_random_mask_between_the_accelerations_is_unsure():
    rng = np.random.default_rng(0)
    mask = equispaced_mask(400, 400, 32)  # the centre block (and column 0)
    outside = np.flatnonzero(mask == 0)
    mask[rng.choice(outside, size=68 - int(mask.sum()), replace=False)] = 1  # 0.17 sampled: 1/4 - 32 %, 1/8 + 36 %
    guess = acceleration_guess(mask)
    assert not guess.sure and "irregularly spaced" in guess.why and "between the accelerations" in guess.why, guess


def test_unequal_spacing_near_8_with_an_acc4_fraction_is_unsure():
    """An acc8 mask with unequal spacing (SPEC §1: "equal spacing not guaranteed") samples like a random acc4 one."""
    block = center_block(400, 40)  # a 10 % centre block
    mask = np.zeros(400, np.float32)
    mask[block] = 1
    for side, direction in ((block.start - 3, -1), (block.stop + 2, 1)):
        column, gaps = side, [6, 10] * 30
        while 0 <= column < 400:
            mask[column] = 1
            column += direction * gaps.pop()
    guess = acceleration_guess(mask)
    assert 7.2 <= line_spacing(mask).mean <= 8.8 and mask.mean() > 0.2
    assert (guess.value, guess.sure) == (8, False) and "mean spacing reads acc8" in guess.why and "line count reads acc4" in guess.why
    mask[[block.start - 2, block.stop + 1]] = 1  # neighbours of the first lines: a random draw, whose line count decides
    guess = acceleration_guess(mask)
    assert (guess.value, guess.sure) == (4, False) and "neighbouring outside lines mark a random draw" in guess.why


def test_a_mask_without_a_centre_block_or_outside_every_family_is_unsure():
    width = 400
    no_centre = equispaced_mask(width, 4)
    no_centre[center_block(width, round(0.08 * width))] = 0
    no_centre[width // 2] = 0
    guess = acceleration_guess(no_centre)
    assert not guess.sure and "no centre block" in guess.why and guess.value == 4
    almost_full = np.ones(width, np.float32)
    almost_full[:10] = 0
    guess = acceleration_guess(almost_full)
    assert (guess.value, guess.sure) == (4, False) and "outside 0.08..0.4" in guess.why
