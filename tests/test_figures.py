"""Figures: the drawing functions on small arrays, the validation grid and curves of a run, leaderboard_eval --figures.

Every PNG is checked to exist, decode, have the pixel size the module promises and not be blank.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import compose_config, write_reconstructions
from tests.test_training import SMALL_MODEL
from utils.data.dataset import SliceDataset
from utils.errors import UserInputError
from utils.evaluation.leaderboard import score_leaderboard
from utils.evaluation.report import extreme_slices
from utils.figures import (
    CURVES_PX, HISTOGRAM_PANEL_PX, ComparisonRow, comparison_grid_size, draw_comparison_grid, draw_curves,
    draw_ssim_histograms, error_scale,
)
from utils.inference.reconstruct import volume_loader
from utils.mri.coils import rss_complex
from utils.mri.crop import CHALLENGE_SHAPE, center_crop_or_pad
from utils.mri.fft import ifft2c
from utils.training.losses import MaskedSSIML1Loss
from utils.training.trainer import train
from utils.training.validate import representative_slices, validate

REPO = Path(__file__).resolve().parents[1]


def assert_png(path: Path, size: tuple[int, int]) -> np.ndarray:
    """``path`` decodes as a PNG of (height, width) ``size`` with real content; returns its RGB pixels."""
    from matplotlib.image import imread

    assert path.is_file(), path
    pixels = imread(path, format="png")
    assert pixels.shape[:2] == size, (path.name, pixels.shape)
    rgb = (pixels[..., :3] * 255).round().astype(np.uint8)
    assert rgb.std() > 5, f"{path.name} is blank"
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 50, f"{path.name} has too few colours"
    assert not list(path.parent.glob("*.tmp"))
    return rgb


def _phantom(size: int = 64, seed: int = 0) -> np.ndarray:
    rows, cols = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    disc = (rows**2 + (cols / 0.8) ** 2 < 0.7).astype(np.float32)
    return (disc * (1 + 0.3 * np.sin(6 * cols)) * 1e-4 + np.random.default_rng(seed).normal(0, 2e-6, (size, size))).astype(np.float32)


def _row(label: str, zero_filled: bool, seed: int = 0) -> ComparisonRow:
    target = _phantom(seed=seed)
    noisy = target + np.random.default_rng(seed + 1).normal(0, 5e-6, target.shape).astype(np.float32)
    return ComparisonRow(label, noisy, target, float(target.max()), 0.93, target * 0.7 if zero_filled else None, 0.81 if zero_filled else None)


@pytest.mark.parametrize("zero_filled,columns", [(True, 4), (False, 3)])
def test_comparison_grid_has_one_row_per_slice(tmp_path, zero_filled, columns):
    rows = [_row("brain_acc4 | a.h5 slice 1", zero_filled, 0), _row("knee_acc8 | b.h5 slice 0", zero_filled, 5)]
    path = draw_comparison_grid(rows, tmp_path / "deep/grid.png", "a title")
    assert path == tmp_path / "deep/grid.png"
    height, width = comparison_grid_size(2, columns)
    assert_png(path, (height, width))
    assert (height, width) == (50 + 2 * 325, columns * 300)


def test_error_scale_is_a_round_factor_that_fits():
    error = np.full((8, 8), 0.01)
    assert error_scale(error, 1.0) == 100
    assert error_scale(np.full((8, 8), 0.3), 1.0) == 2
    assert error_scale(np.zeros((8, 8)), 1.0) == 1000  # a perfect slice: the largest factor
    assert error_scale(np.full((8, 8), 5.0), 1.0) == 1  # errors beyond the range are clipped, not rescaled down


def test_curves_draw_with_and_without_validation(tmp_path):
    train_loss = [[0, 0.5], [1, 0.3], [2, 0.25]]
    path = draw_curves(train_loss, [[0, 0.45], [2, 0.3]], [[0, 0.85], [2, 0.9]], [[0, 0.80], [2, 0.80]], tmp_path / "curves.png", "run")
    assert_png(path, CURVES_PX)
    assert_png(draw_curves(train_loss, [], [], [], tmp_path / "train_only.png"), CURVES_PX)


def test_ssim_histograms_have_one_panel_per_key(tmp_path):
    rng = np.random.default_rng(0)
    panels = {"acc4": {"brain": rng.uniform(0.9, 1, 20), "knee": rng.uniform(0.8, 0.95, 15)}, "acc8": {"brain": [0.9], "knee": []}}
    path = draw_ssim_histograms(panels, tmp_path / "hist.png", "SSIM")
    assert_png(path, (HISTOGRAM_PANEL_PX[0], 2 * HISTOGRAM_PANEL_PX[1]))


def test_figures_never_touch_pyplot_or_a_display(tmp_path):
    code = (
        "import sys, numpy as np; from utils.figures import draw_curves; "
        f"draw_curves([[0, 1.0], [1, 0.5]], [], [], [], {str(tmp_path / 'c.png')!r}); "
        "assert 'matplotlib.pyplot' not in sys.modules"
    )
    env = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["MPLBACKEND"] = "TkAgg"  # an interactive backend that would need a display, were it ever used
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "c.png").is_file()


class ZeroFilled(torch.nn.Module):
    """A model that returns its zero-filled input: validation at the cost of reading the data."""

    def forward(self, masked_kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return center_crop_or_pad(rss_complex(ifft2c(masked_kspace), dim=1), CHALLENGE_SHAPE)


def test_validation_keeps_one_middle_slice_per_anatomy_and_acceleration(tiny_data):
    dataset = SliceDataset(tiny_data / "val")
    picks = representative_slices(dataset)
    groups = {f"{v.name.anatomy}_acc{v.name.acceleration}" for v in dataset.volumes}
    assert sorted(picks.values()) == sorted(groups)
    for (fname, slice_idx), group in picks.items():
        volume = next(v for v in dataset.volumes if f"{v.name.anatomy}_acc{v.name.acceleration}" == group)  # the first
        assert fname == volume.kspace_path.name and slice_idx == volume.kspace.num_slices // 2

    loader = volume_loader(dataset, 1)
    result = validate(ZeroFilled(), loader, MaskedSSIML1Loss(), torch.device("cpu"), progress=False, figure_rows=True)
    assert [row.label.split(" | ")[0] for row in result.figure_rows] == sorted(groups)
    for row in result.figure_rows:
        assert row.reconstruction.shape == row.target.shape == row.zero_filled.shape == (384, 384)
        assert 0 < row.ssim < 1 and row.max_value > 0
        np.testing.assert_array_equal(row.reconstruction, row.zero_filled)
        assert row.ssim == row.zero_filled_ssim
    assert len(result.figure_rows) == len(groups) and result.ssim == result.zero_filled_ssim


def test_bad_figures_value_is_one_clear_error(tmp_path):
    cfg = compose_config("demo", [f"result_root={tmp_path}", "training.figures=sometimes"])
    with pytest.raises(UserInputError, match="training.figures"):
        train(cfg, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_wandb_offline_receives_the_figures(tmp_path, monkeypatch):
    from utils.training.logger import RunLogger

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setattr(sys, "stdin", open("/dev/null"))
    png = draw_curves([[0, 1.0], [1, 0.5]], [], [], [], tmp_path / "figures/curves.png")
    logger = RunLogger(tmp_path, "offline", "test-project", "run", {})
    logger.log_figures({"figures/curves": png, "figures/validation": None}, step=0)
    logger.finish()
    media = list(tmp_path.glob("wandb/offline-run-*/files/media/images/**/*.png"))
    assert len(media) == 1 and media[0].name.startswith("curves")
    RunLogger(tmp_path, "disabled", "p", "r", {}).log_figures({"figures/curves": png}, step=0)  # a no-op


def _eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "leaderboard_eval.py", "--no-progress", *args], cwd=REPO, capture_output=True, text=True)


def test_extreme_slices_are_the_best_then_the_worst(tiny_data, tmp_path):
    recon = write_reconstructions(tiny_data / "leaderboard", tmp_path / "zf", "image_input")
    result = score_leaderboard(tiny_data / "leaderboard", recon, progress=False)
    ssim = sorted((s.ssim for s in result.slices if s.acceleration == 4), reverse=True)
    chosen = extreme_slices(result, 4, count=1)
    assert [rank for rank, _ in chosen] == [1, len(ssim)]
    assert [s.ssim for _, s in chosen] == [ssim[0], ssim[-1]]
    assert [s.ssim for _, s in extreme_slices(result, 4, count=len(ssim))] == ssim  # few slices: all, once each


def test_leaderboard_eval_draws_best_worst_and_distribution(tiny_data, tmp_path):
    recon = write_reconstructions(tiny_data / "leaderboard", tmp_path / "zf", "image_input")
    out = tmp_path / "figs"
    run = _eval("-lp", str(tiny_data / "leaderboard"), "-yp", str(recon), "--figures", str(out))
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0].startswith("Leaderboard SSIM : ") and "figures: " in run.stdout
    result = score_leaderboard(tiny_data / "leaderboard", recon, progress=False)
    for acceleration in (4, 8):
        assert_png(out / f"best_worst_acc{acceleration}.png", comparison_grid_size(len(extreme_slices(result, acceleration)), 3))
    assert_png(out / "ssim_distribution.png", (HISTOGRAM_PANEL_PX[0], 2 * HISTOGRAM_PANEL_PX[1]))
    assert sorted(p.name for p in out.iterdir()) == ["best_worst_acc4.png", "best_worst_acc8.png", "ssim_distribution.png"]


def test_leaderboard_eval_figures_into_a_file_is_refused_before_scoring(tiny_data, tmp_path):
    recon = write_reconstructions(tiny_data / "leaderboard", tmp_path / "zf", "image_input")
    (tmp_path / "taken").write_text("a file")
    run = _eval("-lp", str(tiny_data / "leaderboard"), "-yp", str(recon), "--figures", str(tmp_path / "taken"))
    assert run.returncode == 2 and "--figures needs a folder" in run.stderr and "Traceback" not in run.stderr
    assert "Leaderboard SSIM" not in run.stdout


def test_text_log_prints_a_missing_best_value(caplog):
    """Before the first validation (training.val_every > 1) the best value is None: printed, not a crash."""
    from utils.training.logger import RunLogger

    with caplog.at_level("INFO", logger="train"):
        RunLogger(Path("."), "disabled", "p", "r", {}).log({"train/loss": 0.123456, "best/val_ssim": None}, step=0)
    assert "epoch 0: train/loss 0.12346, best/val_ssim None" in caplog.text


@pytest.mark.slow
def test_training_draws_the_validation_grid_and_the_curves(tiny_data, tmp_path):
    overrides = [
        f"data.root={tiny_data}", "data.synthetic_preset=null", f"result_root={tmp_path}", "exp_name=figs",
        "logger.mode=disabled", "training.epochs=1", "data.num_workers=0", *SMALL_MODEL,
    ]
    state = train(compose_config("demo", overrides), progress=False)
    figures = tmp_path / "figs/figures"
    assert sorted(p.name for p in figures.iterdir()) == ["curves.png", "val_epoch0.png"]
    groups = {f"{v.name.anatomy}_acc{v.name.acceleration}" for v in SliceDataset(tiny_data / "val").volumes}
    assert_png(figures / "val_epoch0.png", comparison_grid_size(len(groups), 4))
    assert_png(figures / "curves.png", CURVES_PX)
    assert len(state.val_zero_filled_ssim_log) == 1 and state.val_zero_filled_ssim_log[0][0] == 0
    assert 0 < state.val_zero_filled_ssim_log[0][1] < 1  # the baseline the curves draw, kept in the checkpoint
