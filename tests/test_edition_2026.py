"""The 2026 edition: SSIM_full and SSIM_bbox equal to the official loop, the Total with the speed tiebreak, fastMRI's
PSNR and NMSE, the timing report, and the same numbers from validation during training."""
from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio
from torch.utils.data import DataLoader

from tests.conftest import write_reconstructions
from utils.data.dataset import SliceDataset
from utils.errors import UserInputError
from utils.evaluation.edition2026 import score_leaderboard_2026
from utils.evaluation.official_reference_2026 import official_2026_folder
from utils.evaluation.slices import score_batch
from utils.metrics.score import SliceScore, edition_2026, tiebreak
from utils.metrics.volume import nmse, psnr, volume_psnr_nmse
from utils.timing_report import read_timing_report, speed_for_tiebreak, write_timing_report

REPO = Path(__file__).resolve().parents[1]


def _eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "leaderboard_eval.py", "--no-progress", "--edition", "2026", *args], cwd=REPO,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def grappa(tiny_data, tmp_path_factory) -> Path:
    """The files' GRAPPA images as reconstructions: imperfect, so every number is informative."""
    return write_reconstructions(tiny_data / "leaderboard", tmp_path_factory.mktemp("grappa"), "image_grappa")


def test_scores_equal_the_official_2026_loop(tiny_data, grappa):
    ours = edition_2026(score_leaderboard_2026(tiny_data / "leaderboard", grappa, progress=False))
    for acceleration in (4, 8):
        full, bbox = official_2026_folder(tiny_data / "leaderboard" / f"acc{acceleration}" / "image", grappa / f"acc{acceleration}")
        # our windows are summed in float64, the official convolution in float32 (a few 1e-7, up to 3e-6 on small boxes)
        assert ours.ssim_full[acceleration] == pytest.approx(full, abs=5e-6)
        assert ours.ssim_bbox[acceleration] == pytest.approx(bbox, abs=5e-6)
        assert ours.boxes[acceleration] > 0 and 0.2 < bbox < 0.999


def test_a_perfect_reconstruction_scores_one_and_the_best_tiebreak(tiny_data, tmp_path):
    recon = write_reconstructions(tiny_data / "leaderboard", tmp_path / "recon")
    result = edition_2026(score_leaderboard_2026(tiny_data / "leaderboard", recon, progress=False), ms_per_slice=50.0)
    assert (result.full, result.bbox, result.tiebreak) == (1.0, 1.0, 0.001) and result.total == pytest.approx(1.001)


def test_tiebreak_is_linear_between_80_and_2000_ms():
    assert tiebreak(10) == tiebreak(80) == 0.001
    assert tiebreak(1040) == pytest.approx(0.0005)
    assert tiebreak(2000) == tiebreak(5000) == tiebreak(None) == tiebreak(math.nan) == 0.0


def test_bbox_is_box_weighted_and_zero_without_boxes():
    scores = [SliceScore(4, "knee", "a.h5", 0, ssim_full=0.9, box_ssims=(0.5, 0.7)), SliceScore(4, "knee", "a.h5", 1, ssim_full=0.7),
              SliceScore(8, "knee", "b.h5", 0, ssim_full=0.6, box_ssims=(0.3,)), SliceScore(8, "knee", "b.h5", 1, ssim_full=math.nan)]
    result = edition_2026(scores)
    assert result.ssim_full == {4: pytest.approx(0.8), 8: 0.6} and result.ssim_bbox == {4: pytest.approx(0.6), 8: 0.3}
    assert edition_2026(scores[:2]).ssim_bbox == {4: pytest.approx(0.6)} and edition_2026([scores[1]]).ssim_bbox == {4: 0.0}


def test_psnr_and_nmse_are_fastmris():
    rng = np.random.default_rng(0)
    gt = rng.random((3, 64, 48)).astype(np.float32)
    pred = gt + 0.05 * rng.standard_normal(gt.shape).astype(np.float32)
    assert psnr(gt, pred) == pytest.approx(peak_signal_noise_ratio(gt, pred, data_range=gt.max()), rel=1e-7)
    expected = np.linalg.norm(gt.astype(np.float64) - pred) ** 2 / np.linalg.norm(gt.astype(np.float64)) ** 2
    assert nmse(gt, pred) == pytest.approx(expected, rel=1e-6) and volume_psnr_nmse(gt, pred) == (psnr(gt, pred), nmse(gt, pred))


def test_ssim_full_from_the_centred_windows_only_equals_the_full_computation():
    """The 2026 path scores only the windows centred in the foreground; the 2025 path's SSIM_full, which computes
    every window touching it, gives bitwise the same number (foregrounds anywhere, at the image border too)."""
    from utils.evaluation.leaderboard import slice_scores_cpu, ssim_full_cpu
    from utils.metrics.foreground import MASK_ANATOMY_2026, foreground_mask

    rng = np.random.default_rng(3)
    for _ in range(60):
        target = np.zeros((384, 384), np.float32)
        height, width = rng.integers(1, 300, 2)
        top, left = rng.integers(0, 385 - height), rng.integers(0, 385 - width)
        target[top : top + height, left : left + width] = rng.random((height, width), dtype=np.float32) * 1e-3 + 1e-4
        reconstruction = target + rng.standard_normal(target.shape).astype(np.float32) * 2e-5
        mask = foreground_mask(target, MASK_ANATOMY_2026, np.uint8)
        ours, reference = ssim_full_cpu(reconstruction, target, mask, float(target.max())), slice_scores_cpu(reconstruction, target, mask, float(target.max()))[1]
        assert (math.isnan(ours) and math.isnan(reference)) or ours == reference
    empty = np.zeros((384, 384), np.float32)
    assert math.isnan(ssim_full_cpu(empty, empty, np.zeros((384, 384), np.uint8), 1.0))


def test_psnr_of_degenerate_volumes_is_a_number_not_an_exception():
    gt = np.ones((1, 8, 8), np.float32)
    assert psnr(gt, gt) == math.inf and math.isnan(psnr(np.zeros_like(gt), gt))
    with np.errstate(over="ignore"):  # the error overflows float32 (a fuzzed reconstruction): -inf dB, as numpy gives
        assert psnr(gt, np.full_like(gt, 3e38)) == -math.inf
        assert volume_psnr_nmse(gt, np.full_like(gt, -3e38))[0] == -math.inf


def test_cli_prints_the_official_lines_the_total_and_the_csv(tiny_data, grappa, tmp_path):
    write_timing_report(grappa, 300.0, 20, 5, 1, "cpu")
    run = _eval("-lp", str(tiny_data / "leaderboard"), "-yp", str(grappa), "--csv", str(tmp_path / "s.csv"))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("Leaderboard SSIM_full : ") and lines[1].startswith("Leaderboard SSIM_bbox : ")
    assert lines[2] == "=" * 10 + " Details " + "=" * 10 and lines[3].startswith("SSIM_full (acc4): ")
    full, bbox = float(lines[0].split(":")[1]), float(lines[1].split(":")[1])
    total = next(line for line in lines if line.startswith("2026 Total : "))
    assert float(total.split()[3]) == pytest.approx(0.5 * full + 0.5 * bbox + tiebreak(300.0), abs=1e-4) and "timing.json" in total
    with open(tmp_path / "s.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert set(rows[0]) == {"acceleration", "anatomy", "fname", "slice_idx", "ssim_full", "boxes", "box_ssims", "psnr", "nmse"}
    assert sum(int(row["boxes"]) for row in rows) == sum(len(row["box_ssims"].split()) for row in rows) > 0
    explicit = _eval("-lp", str(tiny_data / "leaderboard"), "-yp", str(grappa), "--ms-per-slice", "2000")
    assert "tiebreak 0.00000" in explicit.stdout


def test_timing_report_round_trip_and_bad_reports(tmp_path):
    path = write_timing_report(tmp_path, 123.4, 10, 5, 2, "cuda:0")
    assert read_timing_report(path)["ms_per_slice"] == 123.4
    ms, source = speed_for_tiebreak(None, None, tmp_path)
    assert ms == 123.4 and "batch 2" in source
    assert speed_for_tiebreak(None, None, tmp_path / "nothing") == (None, f"no {tmp_path / 'nothing' / 'timing.json'}")
    path.write_text('{"ms_per_slice": "fast"}')
    with pytest.raises(UserInputError, match="ms_per_slice must be a positive number"):
        speed_for_tiebreak(None, None, tmp_path)
    path.write_text("not json")
    with pytest.raises(UserInputError, match="timing.json: is not a readable JSON"):
        speed_for_tiebreak(None, path, tmp_path)


def test_validation_scores_equal_the_2026_scorer(tiny_data, tmp_path):
    """Training validation (torch, batched) and the leaderboard scorer (CPU box filters) give the same 2026 numbers."""
    val = tiny_data / "val"
    dataset = SliceDataset(val)
    torch_scores = []
    for batch in DataLoader(dataset, batch_size=1):
        torch_scores += score_batch(torch.from_numpy(np.asarray(batch.target.numpy() * 0.9 + 1e-6, dtype=np.float32)), batch, torch.device("cpu")).scores
    recon = tmp_path / "recon"
    recon.mkdir()
    import h5py

    for path in (val / "image").glob("*.h5"):
        with h5py.File(path, "r") as source, h5py.File(recon / path.name, "w") as out:
            out["reconstruction"] = source["image_label"][()] * 0.9 + 1e-6
    from utils.evaluation.edition2026 import score_volume_2026
    from utils.data.annotations import read_annotations

    for score in torch_scores:
        with h5py.File(val / "image" / score.fname, "r") as handle:
            target, max_value = handle["image_label"][()], float(handle.attrs["max"])
        with h5py.File(recon / score.fname, "r") as handle:
            full, boxes = score_volume_2026(handle["reconstruction"][()], target, max_value, read_annotations(val / "image" / score.fname))[score.slice_idx]
        assert score.ssim_full == pytest.approx(full, abs=2e-6) and score.box_ssims == pytest.approx(boxes, abs=2e-6)
    assert sum(len(score.box_ssims) for score in torch_scores) > 0
