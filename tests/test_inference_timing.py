"""Inference timing in the 2026 harness convention: untimed warm-up slices, pure model time, the projection."""
from __future__ import annotations

import math
import re

import torch
from torch import nn

from utils.data.transforms import Sample
from utils.inference.reconstruct import LEADERBOARD_SLICES, ModelClock, format_timing


class CountingModel(nn.Module):
    """Returns a (B, 384, 384) image holding the call number, so each output can be traced to its call."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, masked_kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.full((masked_kspace.shape[0], 384, 384), float(self.calls))


def batch_of(slices: int) -> Sample:
    return Sample(
        masked_kspace=torch.zeros(slices, 2, 8, 8, 2),
        mask=torch.ones(slices, 1, 1, 8, 1),
        target=torch.zeros(slices, 0),
        fg_mask=torch.zeros(slices, 0),
        max_value=torch.ones(slices),
        fname=["brain_test1.h5"] * slices,
        slice_idx=torch.arange(slices),
        anatomy=["brain"] * slices,
        acceleration=torch.full((slices,), 4),
    )


def test_the_first_five_slices_are_run_but_not_timed():
    model, clock = CountingModel(), ModelClock(torch.device("cpu"))
    outputs = [clock.run(model, batch_of(1)) for _ in range(8)]
    assert model.calls == 8 and [int(out[0, 0, 0]) for out in outputs] == list(range(1, 9))
    assert clock.untimed_slices == 5 and clock.slices == 3 and clock.seconds > 0


def test_warm_up_counts_whole_batches_and_is_shared_across_folders():
    model, clock = CountingModel(), ModelClock(torch.device("cpu"))
    for _ in range(2):  # acc4, then acc8: the second folder is not warmed up again
        for _ in range(3):
            clock.run(model, batch_of(2))
    assert clock.untimed_slices == 6 and clock.slices == 6  # batches of 2 slices: 3 untimed batches


def test_no_timed_slice_is_reported_as_such():
    clock = ModelClock(torch.device("cpu"))
    clock.run(CountingModel(), batch_of(3))
    assert clock.slices == 0 and clock.ms_per_slice != clock.ms_per_slice  # NaN
    report = format_timing(1.0, 3, 0.5, clock, batch_size=3)
    assert "no slice timed" in report and "at this rate" in report


def test_report_projects_the_model_time_to_the_official_leaderboard():
    clock = ModelClock(torch.device("cpu"))
    clock.untimed_slices, clock.slices, clock.seconds = 5, 20, 3.0  # 150 ms/slice
    report = format_timing(load_seconds=4.0, slices=25, seconds=10.0, clock=clock, batch_size=1)
    assert "150.0 ms/slice over 20 slices after 5 untimed warm-up slices" in report
    projected = int(re.search(r"projected for 1,809 slices: (\d+) s", report).group(1))
    assert projected == round(4.0 + 0.150 * LEADERBOARD_SLICES)
    wall = int(re.search(r"leaderboard would take (\d+) s", report).group(1))
    assert wall == round(4.0 + 10.0 / 25 * LEADERBOARD_SLICES)
    assert "in 14.0 s including the load" in report and "budget: yes" in report
    clock.seconds = 2.0 * 20  # 2 s per slice: the full leaderboard would not fit, the measured run does
    assert "budget: yes" in format_timing(4.0, 25, 10.0, clock, 1)
    assert "budget: NO" in format_timing(4.0, 25, 3600.0, clock, 1)


def test_flop_count_includes_every_fft_of_the_network():
    """An E2E-VarNet with c cascades runs 2 + 2c coil FFTs (ACS images, each cascade's reduce and expand, the
    output), each 5 N log2 N per coil; the U-Net convolutions come on top."""
    from benchmarks.inference_flops import count_flops
    from utils.model.feature_varnet import FeatureVarNet

    coils, height, width, cascades = 3, 32, 24, 2
    model = FeatureVarNet((0, 0, cascades), sens_chans=2, sens_pools=2, image_chans=4, image_pools=2).eval()
    total, fft, _ = count_flops(model, coils, height, width)
    points = height * width
    assert fft == (2 + 2 * cascades) * int(5 * coils * points * math.log2(points))
    assert total > 10 * fft
