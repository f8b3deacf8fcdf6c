"""The scorer's output: the printed report, the per-slice CSV and the best/worst figures.

:func:`write_figures` (``leaderboard_eval.py --figures DIR``) draws the best and worst slices of each
acceleration, read again from the files, and the per-slice SSIM histograms (:mod:`utils.figures`). Output
paths are checked before scoring starts (:func:`check_csv_path`, :func:`check_figures_dir`), not after minutes
of it.
"""
from __future__ import annotations

import csv
import os
from dataclasses import asdict
from pathlib import Path

import h5py
import numpy as np

from utils.atomic import atomic_path
from utils.data.h5 import open_h5, require_attr
from utils.data.layout import ACCELERATIONS, ANATOMIES
from utils.errors import file_error
from utils.evaluation.leaderboard import DEFAULT_KEY, LeaderboardResult
from utils.metrics.score import SliceScore

__all__ = ["CSV_FIELDS", "format_report", "check_csv_path", "write_csv", "extreme_slices", "check_figures_dir", "write_figures"]

CSV_FIELDS = ("acceleration", "anatomy", "fname", "slice_idx", "ssim", "ssim_full")


def format_report(result: LeaderboardResult) -> str:
    """The official three lines, then a breakdown by acceleration and anatomy."""
    lines = [
        f"Leaderboard SSIM : {result.total:.4f}",
        f"Leaderboard SSIM (acc4): {result.mean(acceleration=4):.4f}",
        f"Leaderboard SSIM (acc8): {result.mean(acceleration=8):.4f}",
        "",
        "Breakdown (SSIM = official whole-image mean, SSIM_full = foreground-only mean of the 2026 edition):",
        f"{'acc':<6}{'anatomy':<9}{'slices':>7}{'SSIM':>9}{'SSIM_full':>11}",
    ]
    for acceleration in ACCELERATIONS:
        for anatomy in (*ANATOMIES, None):
            label = anatomy or "all"
            lines.append(
                f"{f'acc{acceleration}':<6}{label:<9}{result.count(acceleration, anatomy):>7}"
                f"{result.mean(acceleration, anatomy):>9.4f}{result.mean(acceleration, anatomy, full=True):>11.4f}"
            )
    return "\n".join(lines)


def check_csv_path(path: str | Path) -> Path:
    """The CSV destination, checked before scoring starts: a file name in an existing, writable folder."""
    path = Path(path)
    if path.is_dir():
        raise file_error(path, "is a folder; --csv needs a file name")
    folder = path.parent
    if not folder.is_dir():
        raise file_error(folder, f"is not an existing folder, so the --csv file {path.name} cannot be written there")
    if not os.access(folder, os.W_OK):
        raise file_error(folder, f"is not writable, so the --csv file {path.name} cannot be written there")
    return path


def write_csv(result: LeaderboardResult, path: str | Path) -> None:
    """Per-slice scores as CSV (written to a temporary file, then renamed)."""
    try:
        with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(asdict(s) for s in result.slices)
    except OSError as err:
        raise file_error(path, f"cannot be written ({err.strerror or err})") from None


def extreme_slices(result: LeaderboardResult, acceleration: int, count: int = 3) -> list[tuple[int, SliceScore]]:
    """(rank, slice) of the ``count`` best then the ``count`` worst slices of one acceleration; rank 1 is the
    best. Every slice appears once (all of them, best first, when there are at most ``2 * count``)."""
    ranked = sorted((s for s in result.slices if s.acceleration == acceleration), key=lambda s: (-s.ssim, s.fname, s.slice_idx))
    ranks = list(range(len(ranked))) if len(ranked) <= 2 * count else [*range(count), *range(len(ranked) - count, len(ranked))]
    return [(rank + 1, ranked[rank]) for rank in ranks]


def check_figures_dir(path: str | Path) -> Path:
    """The --figures folder, created before scoring starts; one clear error where it cannot be."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise file_error(path, "is a file (or lies under one); --figures needs a folder") from None
    except OSError as err:
        raise file_error(path, f"cannot be created for --figures ({err.strerror or err})") from None
    if not os.access(path, os.W_OK):
        raise file_error(path, "is not writable, so --figures cannot be written there")
    return path


def write_figures(
    result: LeaderboardResult, leaderboard_root: str | Path, recon_root: str | Path, out_dir: str | Path, key: str = DEFAULT_KEY, count: int = 3
) -> list[Path]:
    """``best_worst_acc{4,8}.png`` (reconstruction | target | |error| of :func:`extreme_slices`) and
    ``ssim_distribution.png`` (per-slice SSIM by acceleration and anatomy) in ``out_dir``."""
    from utils.figures import ComparisonRow, draw_comparison_grid, draw_ssim_histograms

    leaderboard_root, recon_root, out_dir = Path(leaderboard_root), Path(recon_root), Path(out_dir)
    written = []
    for acceleration in ACCELERATIONS:
        rows = []
        for rank, score in extreme_slices(result, acceleration, count):
            with open_h5(leaderboard_root / f"acc{acceleration}" / "image" / score.fname) as target_file:
                target = target_file["image_label"][score.slice_idx]
                max_value = require_attr(target_file, "max")
            with h5py.File(recon_root / f"acc{acceleration}" / score.fname, "r") as recon_file:
                reconstruction = np.asarray(recon_file[key][score.slice_idx], dtype=np.float32)
            total = result.count(acceleration)
            rows.append(ComparisonRow(f"rank {rank}/{total} | {score.fname} slice {score.slice_idx}", reconstruction, target, max_value, score.ssim))
        if rows:
            title = f"acc{acceleration}: best and worst slices by SSIM (mean {result.mean(acceleration):.4f})"
            written.append(draw_comparison_grid(rows, out_dir / f"best_worst_acc{acceleration}.png", title))
    panels = {
        f"acc{acceleration}": {anatomy: [s.ssim for s in result.slices if s.acceleration == acceleration and s.anatomy == anatomy] for anatomy in ANATOMIES}
        for acceleration in ACCELERATIONS
    }
    written.append(draw_ssim_histograms(panels, out_dir / "ssim_distribution.png", f"per-slice leaderboard SSIM (Total {result.total:.4f})"))
    return written
