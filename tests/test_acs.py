"""ACS detection (utils.mri.acs): fastMRI's symmetric block and the contiguous run, against numpy oracles."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from utils.mri.acs import acs_bounds_batched, acs_mask


def line_mask(width: int, lines: list[int]) -> torch.Tensor:
    """(1, 1, 1, W, 1) float mask with ones on ``lines``."""
    mask = torch.zeros(1, 1, 1, width, 1)
    mask[0, 0, 0, lines, 0] = 1.0
    return mask


def fastmri_symmetric_block(mask: np.ndarray) -> tuple[int, int]:
    """numpy transcription of fastMRI ``SensitivityModel.get_pad_and_num_low_freqs`` (num_low_frequencies=None)."""
    squeezed = mask.astype(np.int8)
    centre = squeezed.shape[0] // 2
    left = int(np.argmin(squeezed[:centre][::-1]))
    right = int(np.argmin(squeezed[centre:]))
    count = max(2 * min(left, right), 1)
    pad = (squeezed.shape[0] - count + 1) // 2
    return pad, pad + count


@pytest.mark.parametrize(
    "width, lines, expected",
    [
        (16, [0, 4, 6, 7, 8, 9, 12], (6, 10)),  # centre 8: run 6..9
        (17, [8], (8, 9)),  # odd width, a single centre line
        (16, list(range(16)), (0, 16)),  # fully sampled
        (16, [0, 4, 7, 12], (8, 8)),  # centre column missing: no ACS
    ],
)
def test_contiguous_mode_finds_the_whole_run_around_the_centre(width, lines, expected):
    start, end = acs_bounds_batched(line_mask(width, lines), "contiguous")
    assert (start.item(), end.item()) == expected


def test_symmetric_mode_equals_fastmri_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(300):
        width = int(rng.integers(24, 90))
        mask = (rng.random(width) < 0.3).astype(np.float32)
        lo, hi = sorted(rng.integers(width // 2 - 10, width // 2 + 10, size=2))
        mask[lo : hi + 1] = 1.0
        mask[0] = 0.0  # a fully sampled left half is where fastMRI's argmin differs (see utils.mri.acs)
        start, end = acs_bounds_batched(torch.from_numpy(mask).view(1, 1, 1, -1, 1), "symmetric")
        assert (start.item(), end.item()) == fastmri_symmetric_block(mask), mask


def test_the_modes_differ_on_an_asymmetric_run_like_the_real_brain_masks():
    width = 396  # a 33-line run, one more on the left: fastMRI keeps 32 of them
    lines = list(range(1, width, 4)) + list(range(width // 2 - 17, width // 2 + 16))
    mask = line_mask(width, lines)
    start, end = acs_bounds_batched(mask, "contiguous")
    assert end.item() - start.item() == 33
    start, end = acs_bounds_batched(mask, "symmetric")
    assert (start.item(), end.item()) == (width // 2 - 16, width // 2 + 16)


def test_symmetric_mode_keeps_one_line_when_the_centre_is_not_sampled():
    start, end = acs_bounds_batched(line_mask(16, [0, 4, 7, 12]), "symmetric")
    assert (start.item(), end.item()) == fastmri_symmetric_block(line_mask(16, [0, 4, 7, 12]).view(-1).numpy())


def test_acs_detection_is_per_sample():
    mask = torch.cat([line_mask(20, [0, 9, 10, 11, 16]), line_mask(20, [4, 8, 10, 12])])
    start, end = acs_bounds_batched(mask, "contiguous")
    assert start.tolist() == [9, 10] and end.tolist() == [12, 11]
    assert acs_mask(mask, "contiguous")[:, 0, 0, :, 0].sum(dim=1).tolist() == [3.0, 1.0]
    assert acs_mask(mask, "symmetric")[:, 0, 0, :, 0].sum(dim=1).tolist() == [2.0, 1.0]
