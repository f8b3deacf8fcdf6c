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
from utils.metrics.score import SliceScore, edition_2026, mean_score, select, ssim_bbox, volume_mean

__all__ = ["CSV_FIELDS", "CSV_FIELDS_2026", "format_report", "format_report_2026", "check_csv_path", "write_csv", "extreme_slices",
           "check_figures_dir", "write_figures"]

CSV_FIELDS = ("acceleration", "anatomy", "fname", "slice_idx", "ssim", "ssim_full", "psnr", "nmse")
CSV_FIELDS_2026 = ("acceleration", "anatomy", "fname", "slice_idx", "ssim_full", "boxes", "box_ssims", "psnr", "nmse")


def format_report(result: LeaderboardResult) -> str:
    """The official three lines, then a breakdown by acceleration and anatomy."""
    lines = [
        f"Leaderboard SSIM : {result.total:.4f}",
        f"Leaderboard SSIM (acc4): {result.mean(acceleration=4):.4f}",
        f"Leaderboard SSIM (acc8): {result.mean(acceleration=8):.4f}",
        "",
        "Breakdown (SSIM = official whole-image mean, SSIM_full = foreground-only mean of the 2026 formula; PSNR (dB)",
        "and NMSE = fastMRI's per-volume metrics, averaged over volumes):",
        f"{'acc':<6}{'anatomy':<9}{'slices':>7}{'SSIM':>9}{'SSIM_full':>11}{'PSNR':>9}{'NMSE':>10}",
    ]
    for acceleration in ACCELERATIONS:
        for anatomy in (*ANATOMIES, None):
            label = anatomy or "all"
            lines.append(
                f"{f'acc{acceleration}':<6}{label:<9}{result.count(acceleration, anatomy):>7}"
                f"{result.mean(acceleration, anatomy):>9.4f}{result.mean(acceleration, anatomy, full=True):>11.4f}"
                f"{volume_mean(result.slices, 'psnr', acceleration, anatomy):>9.2f}"
                f"{volume_mean(result.slices, 'nmse', acceleration, anatomy):>10.5f}"
            )
    return "\n".join(lines)


def format_report_2026(scores: list[SliceScore], ms_per_slice: float | None, time_source: str) -> str:
    """The official 2026 lines, the 2026 Total with the speed tiebreak, and a breakdown with PSNR and NMSE."""
    edition = edition_2026(scores, ms_per_slice)
    full, bbox = edition.ssim_full, edition.ssim_bbox
    speed = f"{ms_per_slice:.1f} ms/slice ({time_source})" if ms_per_slice is not None else f"no time given ({time_source}): counted as 2000 ms/slice"
    lines = [
        f"Leaderboard SSIM_full : {edition.full:.4f}",
        f"Leaderboard SSIM_bbox : {edition.bbox:.4f}",
        "=" * 10 + " Details " + "=" * 10,
        f"SSIM_full (acc4): {full.get(4, float('nan')):.4f}   SSIM_full (acc8): {full.get(8, float('nan')):.4f}",
        f"SSIM_bbox (acc4): {bbox.get(4, float('nan')):.4f}   SSIM_bbox (acc8): {bbox.get(8, float('nan')):.4f}",
        "",
        f"2026 Total : {edition.total:.5f} = 0.5 x {edition.full:.5f} + 0.5 x {edition.bbox:.5f} + tiebreak {edition.tiebreak:.5f} "
        f"(at {speed})",
        "",
        "Breakdown (boxes = scored lesion boxes; PSNR (dB) and NMSE = fastMRI's per-volume metrics, averaged over volumes):",
        f"{'acc':<6}{'anatomy':<9}{'slices':>7}{'boxes':>7}{'SSIM_full':>11}{'SSIM_bbox':>11}{'PSNR':>9}{'NMSE':>10}",
    ]
    anatomies = sorted({s.anatomy for s in scores})
    for acceleration in ACCELERATIONS:
        for anatomy in (*(anatomies if len(anatomies) > 1 else ()), None):
            selected = select(scores, acceleration, anatomy)
            lines.append(
                f"{f'acc{acceleration}':<6}{anatomy or 'all':<9}{len(selected):>7}{sum(len(s.box_ssims) for s in selected):>7}"
                f"{mean_score(selected, 'ssim_full'):>11.4f}{ssim_bbox(selected):>11.4f}"
                f"{volume_mean(selected, 'psnr'):>9.2f}{volume_mean(selected, 'nmse'):>10.5f}"
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


def _csv_row(score: SliceScore) -> dict:
    row = asdict(score)
    row["boxes"] = len(score.box_ssims)
    row["box_ssims"] = " ".join(f"{value:.6f}" for value in score.box_ssims)
    return row


def write_csv(scores: list[SliceScore], path: str | Path, fields: tuple[str, ...] = CSV_FIELDS) -> None:
    """Per-slice scores as CSV, the columns ``fields`` (:data:`CSV_FIELDS`, :data:`CSV_FIELDS_2026`; the volume's
    PSNR and NMSE repeated on each of its slices), written to a temporary file, then renamed."""
    try:
        with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(_csv_row(score) for score in scores)
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
