"""The leaderboard score: exact on identity, lower for zero-filled input, equal to the official loop, clear errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tests.conftest import write_reconstructions
from utils.errors import UserInputError
from utils.evaluation.leaderboard import score_leaderboard
from utils.evaluation.memory import retain_freed_memory
from utils.evaluation.official_reference import official_folder_ssim

REPO = Path(__file__).resolve().parents[1]


def _eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "leaderboard_eval.py", "--no-progress", *args], cwd=REPO, capture_output=True, text=True
    )


def test_perfect_reconstruction_scores_exactly_one(tiny_data, tmp_path):
    recon = write_reconstructions(tiny_data / "leaderboard", tmp_path / "recon")
    result = score_leaderboard(tiny_data / "leaderboard", recon, progress=False)
    assert result.total == 1.0 and result.mean(acceleration=4) == 1.0 and result.mean(full=True) == 1.0
    assert result.count() == sum(h5py.File(p, "r")["image_label"].shape[0] for p in tiny_data.glob("leaderboard/*/image/*.h5"))


def test_zero_filled_input_scores_lower(tiny_data, tmp_path):
    recon = write_reconstructions(tiny_data / "leaderboard", tmp_path / "zf", "image_input")
    zero_filled = score_leaderboard(tiny_data / "leaderboard", recon, progress=False)
    assert 0.3 < zero_filled.total < 0.99
    assert all(s.ssim < 1.0 for s in zero_filled.slices)
    assert zero_filled.mean(full=True) < zero_filled.total  # the background (SSIM 1) lifts the official number


def test_scores_equal_the_official_per_slice_loop(tiny_data, tmp_path):
    recon = write_reconstructions(tiny_data / "leaderboard", tmp_path / "recon", "image_grappa")
    result = score_leaderboard(tiny_data / "leaderboard", recon, progress=False)
    for acceleration in (4, 8):
        target_dir = tiny_data / f"leaderboard/acc{acceleration}/image"
        names = sorted(p.name for p in target_dir.glob("*.h5"))
        official = official_folder_ssim(target_dir, recon / f"acc{acceleration}", names)
        ours = [s.ssim for name in names for s in result.slices if s.fname == name and s.acceleration == acceleration]
        np.testing.assert_allclose(ours, official, atol=1e-6, rtol=0)
        assert result.mean(acceleration=acceleration) == pytest.approx(np.mean(official), abs=1e-6)


def test_cli_prints_the_official_lines_and_writes_csv(tiny_data, tmp_path):
    recon = write_reconstructions(tiny_data / "leaderboard", tmp_path / "recon", "image_input")
    csv_path = tmp_path / "scores.csv"
    run = _eval("-lp", str(tiny_data / "leaderboard"), "-yp", str(recon), "--csv", str(csv_path))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("Leaderboard SSIM : ")
    assert lines[1].startswith("Leaderboard SSIM (acc4): ") and lines[2].startswith("Leaderboard SSIM (acc8): ")
    acc4, acc8 = float(lines[1].split(":")[1]), float(lines[2].split(":")[1])
    assert float(lines[0].split(":")[1]) == pytest.approx((acc4 + acc8) / 2, abs=1e-4)
    assert any(line.startswith("acc4  brain") for line in lines) and any(line.startswith("acc8  knee") for line in lines)
    rows = csv_path.read_text().splitlines()
    assert rows[0] == "acceleration,anatomy,fname,slice_idx,ssim,ssim_full,psnr,nmse"  # fastMRI's per-volume PSNR, NMSE
    assert len(rows) - 1 == score_leaderboard(tiny_data / "leaderboard", recon, progress=False).count()


def test_strict_demands_the_official_58_files(tiny_data, tmp_path):
    recon = write_reconstructions(tiny_data / "leaderboard", tmp_path / "recon")
    run = _eval("-lp", str(tiny_data / "leaderboard"), "-yp", str(recon), "--strict")
    assert run.returncode == 2
    assert "official 58 files" in run.stderr and "brain_test29.h5" in run.stderr and "Traceback" not in run.stderr


def _break(recon: Path, name: str, action) -> None:
    with h5py.File(recon / "acc4" / name, "r+") as handle:
        action(handle)


def _set(value):
    def action(handle):
        del handle["reconstruction"]
        handle.create_dataset("reconstruction", data=value)

    return action


@pytest.mark.parametrize(
    "breakage,message",
    [
        (lambda r: (r / "acc4/brain_test1.h5").unlink(), "missing brain_test1.h5"),
        (lambda r: (r / "acc4/knee_test1.h5").rename(r / "acc4/knee_test2.h5"), "missing knee_test1.h5; extra knee_test2.h5"),
        (lambda r: _break(r, "brain_test1.h5", lambda h: h.move("reconstruction", "recon")), "has no key 'reconstruction'"),
        (lambda r: _break(r, "brain_test1.h5", _set(np.zeros((2, 320, 320), np.float32))), "has shape (2, 320, 320)"),
        (lambda r: _break(r, "brain_test1.h5", lambda h: (h.__delitem__("reconstruction"), h.create_group("reconstruction"))),
         "holds a group, not a dataset, under 'reconstruction'"),
        (lambda r: _break(r, "knee_test1.h5", _set(np.full((2, 384, 384), np.nan, np.float32))), "NaN or Inf values: knee_test1.h5"),
        (lambda r: (r / "acc4/brain_test1.h5").write_bytes(b"not hdf5"), "brain_test1.h5 cannot be read as HDF5"),
    ],
)
def test_bad_reconstructions_fail_with_one_clear_line(tiny_data, tmp_path, breakage, message):
    recon = write_reconstructions(tiny_data / "leaderboard", tmp_path / "recon")
    breakage(recon)
    with pytest.raises(UserInputError) as error:
        score_leaderboard(tiny_data / "leaderboard", recon, progress=False)
    assert message in str(error.value) and str(recon / "acc4") in str(error.value)
    run = _eval("-lp", str(tiny_data / "leaderboard"), "-yp", str(recon))
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and message in run.stderr


def test_missing_folders_are_reported(tiny_data, tmp_path):
    run = _eval("-lp", str(tmp_path / "nowhere"), "-yp", str(tmp_path))
    assert run.returncode == 2 and "leaderboard target folder not found" in run.stderr
    run = _eval("-lp", str(tiny_data / "leaderboard"), "-yp", str(tmp_path / "none"))
    assert run.returncode == 2 and "reconstruction folder not found" in run.stderr


def test_bounding_box_scorer_equals_the_batched_convolution_scorer(tiny_data):
    """The CPU path computes only windows touching the foreground; the torch path computes every window."""
    from utils.evaluation.leaderboard import score_volume
    from utils.metrics.foreground import foreground_mask
    from utils.metrics.ssim import leaderboard_ssim_map

    with h5py.File(next(tiny_data.glob("leaderboard/acc8/image/knee_*.h5")), "r") as file:
        target, zero_filled, max_value = file["image_label"][()], file["image_input"][()], float(file.attrs["max"])
    target = np.concatenate([target, np.zeros_like(target[:1])])  # and a slice with an empty foreground
    zero_filled = np.concatenate([zero_filled, zero_filled[:1]])
    official, full = score_volume(zero_filled, target, max_value, "knee", "cpu")
    maps = leaderboard_ssim_map(torch.from_numpy(zero_filled), torch.from_numpy(target),
                                torch.from_numpy(foreground_mask(target, "knee")), max_value)
    np.testing.assert_allclose(official, maps.mean(dim=(-2, -1)).double().numpy(), atol=1e-6, rtol=0)
    assert official[-1] == 1.0 and np.isnan(full[-1])
    # the windows left out score exactly 1 in float32 too: two all-zero patches
    mask = torch.from_numpy(foreground_mask(target, "knee"))
    outside = torch.nn.functional.max_pool2d(mask[:-1, None], 7, stride=1)[:, 0] == 0
    assert outside.any() and torch.all(maps[:-1][outside] == 1.0)


def test_scoring_on_the_cpu_never_imports_torch(tiny_data, tmp_path):
    """The CPU scorer is numpy and OpenCV only: a whole-process run starts without torch's second of imports,
    and the thread pool gives the same per-slice scores in the same order as one thread."""
    recon = write_reconstructions(tiny_data / "leaderboard", tmp_path / "zf", "image_input")
    probe = (
        "import sys, runpy; sys.argv = ['leaderboard_eval.py', '-lp', sys.argv[1], '-yp', sys.argv[2], '--no-progress'];\n"
        "try:\n    runpy.run_path('leaderboard_eval.py', run_name='__main__')\n"
        "except SystemExit as done:\n    assert not done.code, done.code\n"
        "print('torch imported:', 'torch' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", probe, str(tiny_data / "leaderboard"), str(recon)], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("Leaderboard SSIM : ") and "torch imported: False" in run.stdout

    import utils.evaluation.leaderboard as leaderboard

    threaded = score_leaderboard(tiny_data / "leaderboard", recon, progress=False)
    original, leaderboard.SCORING_THREADS = leaderboard.SCORING_THREADS, 1
    try:
        single = score_leaderboard(tiny_data / "leaderboard", recon, progress=False)
    finally:
        leaderboard.SCORING_THREADS = original
    assert threaded.slices == single.slices


def test_the_scorer_keeps_freed_memory_where_glibc_allows_it():
    import platform

    on_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert retain_freed_memory() is on_glibc  # elsewhere: False, and the allocator's defaults stay


def test_one_pass_reads_tell_non_finite_volumes_from_overflowing_ones(tmp_path):
    """read_pair finds NaN/Inf from the PSNR/NMSE sums: the culprit slice is named, a finite reconstruction whose
    squared error overflows float32 is scored (PSNR -inf), a non-finite target is refused naming its slice."""
    from utils.evaluation.leaderboard import read_pair

    rng = np.random.default_rng(5)
    target = rng.random((3, 16, 16)).astype(np.float32)

    def pair(reconstruction, target=target):
        with h5py.File(tmp_path / "t.h5", "w") as file:
            file.create_dataset("image_label", data=target)
            file.attrs["max"] = 1.0
        with h5py.File(tmp_path / "r.h5", "w") as file:
            file.create_dataset("reconstruction", data=reconstruction)
        return read_pair((tmp_path / "t.h5", tmp_path / "r.h5"), "reconstruction")

    noisy = target + 0.1 * rng.standard_normal(target.shape).astype(np.float32)
    *_, (psnr, nmse) = pair(noisy)
    error, energy = ((target.astype(np.float64) - noisy) ** 2).sum(), (target.astype(np.float64) ** 2).sum()
    assert psnr == pytest.approx(10 * np.log10(float(target.max()) ** 2 / (error / target.size)), rel=1e-6)
    assert nmse == pytest.approx(error / energy, rel=1e-6)
    for bad in (np.inf, -np.inf, np.nan):
        broken = noisy.copy()
        broken[1, 3, 4] = bad
        assert pair(broken) == "r.h5 (slice 1)"
    with np.errstate(over="ignore"):
        huge = pair(np.full_like(target, 3e38))
    assert not isinstance(huge, str) and huge[3][0] == -np.inf
    broken_target = target.copy()
    broken_target[2, 0, 0] = np.nan
    with pytest.raises(UserInputError, match="t.h5.*slice 2 of 'image_label' holds NaN or Inf"):
        pair(noisy, broken_target)
