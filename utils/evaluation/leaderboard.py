"""The SNU FastMRI 2025 leaderboard score (SPEC §2), one volume at a time.

For each volume: the target, the reconstruction and ``max`` are read once and the foreground mask of every
slice comes from :func:`utils.metrics.foreground.foreground_mask`. A slice scores the mean of its whole
378x378 SSIM map (the official number) and, beyond the official script, the foreground-only mean (the 2026
``SSIM_full``), as a :class:`~utils.metrics.score.SliceScore`. Every slice weighs the same; Total =
(SSIM acc4 + SSIM acc8) / 2 (:func:`~utils.metrics.score.leaderboard_total`).

On the CPU a window that lies wholly outside the foreground compares two all-zero patches and scores exactly
1 (``(C1 * C2) / (C1 * C2)``), so only the windows that touch the mask's bounding box are computed, with
OpenCV's float64 box filter (:func:`utils.metrics.ssim.box_moments`); the rest count as 1. On CUDA the
batched :func:`utils.metrics.ssim.ssim_map` scores whole volumes. Both go through the one SSIM formula,
:func:`utils.metrics.ssim.ssim_from_moments`. Where the time went, and what this gained:
``docs/performance.md``.

Before anything is scored, the reconstruction folder is checked against the target folder
(:mod:`utils.evaluation.inputs`); NaN or Inf values are listed after the pass over the data. Printing, the CSV
and the figures are :mod:`utils.evaluation.report`.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np
from tqdm import tqdm

from utils.data.h5 import open_h5, read_volume, require_attr, require_dataset, require_finite
from utils.data.layout import ACCELERATIONS, parse_volume_name
from utils.errors import UserInputError
from utils.evaluation.inputs import check_official_names, check_reconstructions
from utils.metrics.foreground import foreground_mask
from utils.metrics.score import SliceScore, leaderboard_total, mean_score, select
from utils.metrics.ssim_moments import K1, K2, WIN_SIZE, box_moments, ssim_from_moments
from utils.metrics.volume import VolumeSums

if TYPE_CHECKING:
    import torch

__all__ = ["DEFAULT_KEY", "LeaderboardResult", "slice_scores_cpu", "ssim_full_cpu", "score_volume", "score_folder", "score_leaderboard"]

SCORING_THREADS = min(4, os.cpu_count() or 1)
DEFAULT_KEY = "reconstruction"


@dataclass
class LeaderboardResult:
    """Per-slice scores and the means the leaderboard reports."""

    slices: list[SliceScore]

    def mean(self, acceleration: int | None = None, anatomy: str | None = None, full: bool = False) -> float:
        """Mean over the selected slices (every slice weighs the same); NaN if none is selected.

        With ``full``, slices with an empty foreground (SSIM_full undefined) are left out.
        """
        return mean_score(self.slices, "ssim_full" if full else "ssim", acceleration, anatomy)

    def count(self, acceleration: int | None = None, anatomy: str | None = None) -> int:
        return len(select(self.slices, acceleration, anatomy))

    @property
    def total(self) -> float:
        """(SSIM acc4 + SSIM acc8) / 2, the leaderboard's Total."""
        return leaderboard_total(self.slices)


def _windows_ssim(reconstruction: np.ndarray, target: np.ndarray, mask: np.ndarray, max_value: float,
                  rows: tuple[int, int], cols: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The SSIM map of the masked images over the windows whose top-left corner lies in ``rows`` x ``cols``
    (inclusive), and ``mask`` at those windows' centres."""
    (top, bottom), (left, right), border = rows, cols, WIN_SIZE // 2
    box = (slice(top, bottom + WIN_SIZE), slice(left, right + WIN_SIZE))
    # constants rounded to float32 as the official script's float32 tensors round them
    c1, c2 = (np.float32((k * max_value) ** 2) for k in (K1, K2))
    # the mask is 0 or 1, so OpenCV's product is numpy's, bitwise, at a third of its cost (no uint8 -> float cast pass)
    masked = (cv2.multiply(image[box], mask[box], dtype=cv2.CV_32F) for image in (reconstruction, target))
    ssim = ssim_from_moments(*box_moments(*masked), c1, c2)
    return ssim, mask[top + border : bottom + 1 + border, left + border : right + 1 + border]


def _foreground_mean(ssim: np.ndarray, valid: np.ndarray) -> float:
    return float((ssim * valid).sum(dtype=np.float64) / np.count_nonzero(valid))


def slice_scores_cpu(reconstruction: np.ndarray, target: np.ndarray, mask: np.ndarray, max_value: float) -> tuple[float, float]:
    """Official SSIM and SSIM_full of one (H, W) float32 slice, ``mask`` its uint8 0/1 foreground, computing only
    the windows that touch the foreground."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    map_h, map_w = target.shape[0] - WIN_SIZE + 1, target.shape[1] - WIN_SIZE + 1
    if rows.size == 0:
        return 1.0, float("nan")  # every window compares two zero patches
    # windows (top-left corners) that overlap the bounding box [rows[0], rows[-1]] x [cols[0], cols[-1]]
    window_rows = (max(rows[0] - WIN_SIZE + 1, 0), min(rows[-1], map_h - 1))
    window_cols = (max(cols[0] - WIN_SIZE + 1, 0), min(cols[-1], map_w - 1))
    ssim, valid = _windows_ssim(reconstruction, target, mask, max_value, window_rows, window_cols)
    official = (ssim.sum(dtype=np.float64) + (map_h * map_w - ssim.size)) / (map_h * map_w)
    return float(official), _foreground_mean(ssim, valid)


def ssim_full_cpu(reconstruction: np.ndarray, target: np.ndarray, mask: np.ndarray, max_value: float) -> float:
    """SSIM_full of one (H, W) slice from only the windows whose centre is in the foreground's bounding box (the
    official whole-image SSIM also needs every window that touches it): the 2026 score's path."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    border, map_h, map_w = WIN_SIZE // 2, target.shape[0] - WIN_SIZE + 1, target.shape[1] - WIN_SIZE + 1
    if rows.size == 0:
        return float("nan")
    window_rows = (max(rows[0] - border, 0), min(rows[-1] - border, map_h - 1))
    window_cols = (max(cols[0] - border, 0), min(cols[-1] - border, map_w - 1))
    if window_rows[0] > window_rows[1] or window_cols[0] > window_cols[1]:
        return float("nan")  # the foreground lies in the border the valid map leaves out
    return _foreground_mean(*_windows_ssim(reconstruction, target, mask, max_value, window_rows, window_cols))


def score_volume(
    reconstruction: np.ndarray, target: np.ndarray, max_value: float, anatomy: str, device: str | torch.device = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Official SSIM and foreground-only SSIM of every slice of one volume.

    Args:
        reconstruction, target: (S, 384, 384) float32.
        max_value: the volume's ``max`` attribute (data_range).
        anatomy: 'brain' or 'knee' (threshold of the foreground mask).
        device: 'cpu' (bounding-box box filters) or a CUDA device (batched convolutions).
    Returns:
        two (S,) float64 arrays: ssim and ssim_full (NaN where the foreground is empty).
    """
    reconstruction = np.ascontiguousarray(reconstruction, dtype=np.float32)
    target = np.ascontiguousarray(target, dtype=np.float32)
    if on_cpu(device):  # slice by slice, mask in uint8: no volume-sized temporaries (fresh pages cost more than the maths)
        scores = [slice_scores_cpu(r, t, foreground_mask(t, anatomy, np.uint8), max_value) for r, t in zip(reconstruction, target)]
        return np.array([s[0] for s in scores]), np.array([s[1] for s in scores])
    mask = foreground_mask(target, anatomy)
    import torch  # only here: scoring on the CPU never imports torch (a second of start-up)

    from utils.metrics.ssim import leaderboard_ssim_map, masked_mean

    mask_t = torch.from_numpy(mask).to(device)
    recon_t, target_t = torch.from_numpy(reconstruction).to(device), torch.from_numpy(target).to(device)
    with torch.no_grad():
        maps = leaderboard_ssim_map(recon_t, target_t, mask_t, max_value)
        official = maps.mean(dim=(-2, -1))
        foreground_only = masked_mean(maps, mask_t)
    return official.double().cpu().numpy(), foreground_only.double().cpu().numpy()


def score_folder(
    target_dir: str | Path,
    recon_dir: str | Path,
    key: str = DEFAULT_KEY,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> list[SliceScore]:
    """Score every reconstruction in ``recon_dir`` against the same-named target in ``target_dir``."""
    target_dir, recon_dir = Path(target_dir), Path(recon_dir)
    return score_pairs(check_reconstructions(target_dir, recon_dir, key), recon_dir, lambda pair: _score_pair(pair, key, device), device, progress)


def on_cpu(device: str | torch.device) -> bool:
    return str(device).split(":")[0] == "cpu"


def non_finite_slice(volume: np.ndarray) -> int | None:
    """The first slice of ``volume`` (S, H, W) holding NaN or Inf, None if there is none."""
    bad = ~np.isfinite(volume.reshape(len(volume), -1)).all(axis=1)
    return int(np.flatnonzero(bad)[0]) if bad.any() else None


def read_pair(pair: tuple[Path, Path], key: str) -> tuple[np.ndarray, float, np.ndarray, tuple[float, float]] | str:
    """(target, its ``max``, reconstruction, the volume's (PSNR, NMSE)) of a checked pair; ``"<name> (slice s)"``
    if the reconstruction holds NaN or Inf (listed together by :func:`score_pairs`); a non-finite target is a
    UserInputError naming it.

    One pass over the slices takes fastMRI's squared sums, and they tell finite volumes apart for free (NaN and
    Inf survive them); only a volume whose sums are not finite is searched for the culprit.
    """
    target_path, recon_path = pair
    with open_h5(target_path) as target_file:
        target = read_volume(require_dataset(target_file, "image_label", ndim=3, kind="real"))
        max_value = require_attr(target_file, "max")
    with open_h5(recon_path) as recon_file:
        reconstruction = read_volume(require_dataset(recon_file, key, ndim=3, kind="real"))
    sums = VolumeSums()
    if not all([sums.add(target_slice, recon_slice) for target_slice, recon_slice in zip(target, reconstruction)]):
        require_finite(target_path, "image_label", target)  # else an overflowing sum, or the reconstruction
        bad = non_finite_slice(reconstruction)
        if bad is not None:
            return f"{recon_path.name} (slice {bad})"
    return target, max_value, reconstruction, sums.psnr_nmse()


def _score_pair(pair: tuple[Path, Path], key: str, device: str | torch.device) -> list[SliceScore] | str:
    """2025 scores of one checked (target, reconstruction) pair, or the name of a non-finite reconstruction."""
    read = read_pair(pair, key)
    if isinstance(read, str):
        return read
    target, max_value, reconstruction, (volume_psnr, volume_nmse) = read
    name = parse_volume_name(pair[0])
    official, foreground_only = score_volume(reconstruction, target, max_value, name.anatomy, device)
    return [
        SliceScore(name.acceleration, name.anatomy, pair[0].name, index, float(a), float(b), psnr=volume_psnr, nmse=volume_nmse)
        for index, (a, b) in enumerate(zip(official, foreground_only))
    ]


def score_pairs(
    pairs: list[tuple[Path, Path]], recon_dir: Path, score_pair: Callable[[tuple[Path, Path]], list[SliceScore] | str],
    device: str | torch.device, progress: bool,
) -> list[SliceScore]:
    """``score_pair`` of checked (target, reconstruction) pairs, in order; NaN or Inf reconstructions are listed in
    one error. On the CPU volumes are scored in :data:`SCORING_THREADS` threads, each OpenCV call in one thread:
    OpenCV, numpy and the reads (:func:`utils.data.h5.read_volume`) release the GIL, so one volume's read overlaps
    another's SSIM and both cores compute."""
    scores, non_finite = [], []
    threads = SCORING_THREADS if on_cpu(device) else 1
    opencv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # the volumes share the cores already; OpenCV's own pool on top cost 10 % more CPU, no less wall
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            results = pool.map(score_pair, pairs)
            for result in tqdm(results, total=len(pairs), desc=f"scoring {recon_dir.name}", unit="volume", disable=not progress):
                if isinstance(result, str):
                    non_finite.append(result)
                else:
                    scores.extend(result)
    finally:
        cv2.setNumThreads(opencv_threads)
    if non_finite:
        raise UserInputError(f"{recon_dir}: reconstructions hold NaN or Inf values: {', '.join(non_finite)}")
    return scores


def score_leaderboard(
    leaderboard_root: str | Path,
    recon_root: str | Path,
    key: str = DEFAULT_KEY,
    strict: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> LeaderboardResult:
    """Score ``recon_root/acc{4,8}/*.h5`` against ``leaderboard_root/acc{4,8}/image/*.h5``."""
    leaderboard_root, recon_root = Path(leaderboard_root), Path(recon_root)
    folders = []
    for acceleration in ACCELERATIONS:  # every folder is checked before anything is scored
        target_dir = leaderboard_root / f"acc{acceleration}" / "image"
        if not target_dir.is_dir():
            raise UserInputError(f"{target_dir}: leaderboard target folder not found")
        if strict:
            check_official_names(target_dir)
        folders.append((target_dir, recon_root / f"acc{acceleration}"))
    checked = [(recon_dir, check_reconstructions(target_dir, recon_dir, key)) for target_dir, recon_dir in folders]
    scores = []
    for recon_dir, pairs in checked:
        scores.extend(score_pairs(pairs, recon_dir, lambda pair: _score_pair(pair, key, device), device, progress))
    return LeaderboardResult(scores)
