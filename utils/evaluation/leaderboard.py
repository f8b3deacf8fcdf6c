"""The SNU FastMRI 2025 leaderboard score (SPEC §2), one volume at a time.

For each volume: the target, the reconstruction and ``max`` are read once and the foreground mask of every
slice comes from :func:`utils.metrics.foreground.foreground_mask`. A slice scores the mean of its whole
378x378 SSIM map (the official number) and, beyond the official script, the foreground-only mean (the 2026
``SSIM_full``). Every slice weighs the same; Total = (SSIM acc4 + SSIM acc8) / 2.

On the CPU a window that lies wholly outside the foreground compares two all-zero patches and scores exactly
1 (``(C1 * C2) / (C1 * C2)``), so only the windows that touch the mask's bounding box are computed, with
OpenCV's float64 box filter (:func:`utils.metrics.ssim.box_moments`); the rest count as 1. On CUDA the
batched :func:`utils.metrics.ssim.ssim_map` scores whole volumes. Both go through the one SSIM formula,
:func:`utils.metrics.ssim.ssim_from_moments`. Where the time went, and what this gained:
``docs/performance.md``.

Before anything is scored, the reconstruction folder is checked against the target folder: missing or
extra files, a missing key and a wrong shape are all listed in one error; NaN or Inf values are listed after
the pass over the data.

:func:`write_figures` (``leaderboard_eval.py --figures DIR``) draws the best and worst slices of each
acceleration, read again from the files, and the per-slice SSIM histograms (:mod:`utils.figures`).
"""
from __future__ import annotations

import csv
import ctypes
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np
from tqdm import tqdm

from utils.atomic import atomic_path
from utils.data.h5 import open_h5, require_attr, require_dataset
from utils.data.layout import ACCELERATIONS, ANATOMIES, leaderboard_filename, list_volumes, parse_volume_name
from utils.errors import UserInputError, file_error
from utils.metrics.foreground import foreground_mask
from utils.metrics.ssim_moments import K1, K2, WIN_SIZE, box_moments, ssim_from_moments

if TYPE_CHECKING:
    import torch

__all__ = [
    "OFFICIAL_FILES_PER_ACCELERATION",
    "SliceScore",
    "LeaderboardResult",
    "score_volume",
    "score_folder",
    "score_leaderboard",
    "format_report",
    "check_csv_path",
    "write_csv",
    "extreme_slices",
    "check_figures_dir",
    "write_figures",
]

OFFICIAL_FILES_PER_ACCELERATION = 58
SCORING_THREADS = min(4, os.cpu_count() or 1)
DEFAULT_KEY = "reconstruction"


@dataclass(frozen=True)
class SliceScore:
    """Scores of one slice: ``ssim`` is the official number, ``ssim_full`` the foreground-only mean."""

    acceleration: int
    anatomy: str
    fname: str
    slice_idx: int
    ssim: float
    ssim_full: float


@dataclass
class LeaderboardResult:
    """Per-slice scores and the means the leaderboard reports."""

    slices: list[SliceScore]

    def mean(self, acceleration: int | None = None, anatomy: str | None = None, full: bool = False) -> float:
        """Mean over the selected slices (every slice weighs the same); NaN if none is selected.

        With ``full``, slices with an empty foreground (SSIM_full undefined) are left out.
        """
        values = [
            s.ssim_full if full else s.ssim
            for s in self.slices
            if (acceleration is None or s.acceleration == acceleration) and (anatomy is None or s.anatomy == anatomy)
        ]
        values = [v for v in values if not math.isnan(v)]
        return float(np.mean(values)) if values else float("nan")

    def count(self, acceleration: int | None = None, anatomy: str | None = None) -> int:
        return sum(
            1
            for s in self.slices
            if (acceleration is None or s.acceleration == acceleration) and (anatomy is None or s.anatomy == anatomy)
        )

    @property
    def total(self) -> float:
        """(SSIM acc4 + SSIM acc8) / 2, the leaderboard's Total."""
        return (self.mean(acceleration=4) + self.mean(acceleration=8)) / 2


def _slice_scores_cpu(reconstruction: np.ndarray, target: np.ndarray, mask: np.ndarray, max_value: float) -> tuple[float, float]:
    """Official SSIM and SSIM_full of one (H, W) slice, computing only the windows that touch the foreground."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    map_h, map_w = target.shape[0] - WIN_SIZE + 1, target.shape[1] - WIN_SIZE + 1
    if rows.size == 0:
        return 1.0, float("nan")  # every window compares two zero patches
    # windows (top-left corners) that overlap the bounding box [rows[0], rows[-1]] x [cols[0], cols[-1]]
    top, bottom = max(rows[0] - WIN_SIZE + 1, 0), min(rows[-1], map_h - 1)
    left, right = max(cols[0] - WIN_SIZE + 1, 0), min(cols[-1], map_w - 1)
    box = (slice(top, bottom + WIN_SIZE), slice(left, right + WIN_SIZE))
    # constants rounded to float32 as the official script's float32 tensors round them
    c1, c2 = (np.float32((k * max_value) ** 2) for k in (K1, K2))
    ssim = ssim_from_moments(*box_moments(reconstruction[box] * mask[box], target[box] * mask[box]), c1, c2)
    official = (ssim.sum(dtype=np.float64) + (map_h * map_w - ssim.size)) / (map_h * map_w)
    border = WIN_SIZE // 2
    valid = mask[top + border : bottom + 1 + border, left + border : right + 1 + border]
    return float(official), float((ssim * valid).sum(dtype=np.float64) / valid.sum(dtype=np.float64))


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
    if _on_cpu(device):  # slice by slice, mask in uint8: no volume-sized temporaries (fresh pages cost more than the maths)
        scores = [_slice_scores_cpu(r, t, foreground_mask(t, anatomy, np.uint8), max_value) for r, t in zip(reconstruction, target)]
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


def _check_reconstructions(target_dir: Path, recon_dir: Path, key: str) -> list[tuple[Path, Path]]:
    """Pair every target file with its reconstruction; one UserInputError lists everything that is wrong."""
    targets = {p.name: p for p in list_volumes(target_dir)}
    if not recon_dir.is_dir():
        raise UserInputError(f"{recon_dir}: reconstruction folder not found")
    recons = {p.name: p for p in recon_dir.glob("*.h5")}
    problems = []
    missing = sorted(set(targets) - set(recons))
    extra = sorted(set(recons) - set(targets))
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if extra:
        problems.append(f"extra {', '.join(extra)}")
    for name in sorted(set(targets) & set(recons)):
        with open_h5(targets[name]) as target_file:
            target_shape = require_dataset(target_file, "image_label", ndim=3).shape
            require_attr(target_file, "max")
        try:
            with h5py.File(recons[name], "r") as recon_file:
                if key not in recon_file:
                    problems.append(f"{name} has no key '{key}' (keys: {sorted(recon_file.keys())})")
                elif not isinstance(recon_file[key], h5py.Dataset):
                    problems.append(f"{name} holds a group, not a dataset, under '{key}'")
                elif recon_file[key].shape != target_shape:
                    problems.append(f"{name} has shape {recon_file[key].shape} but its target has {target_shape}")
        except OSError:
            problems.append(f"{name} cannot be read as HDF5 (truncated or corrupt?)")
    if problems:
        raise UserInputError(f"{recon_dir}: reconstructions do not match the targets in {target_dir}: {'; '.join(problems)}")
    return [(targets[name], recons[name]) for name in targets]


def _check_official_names(target_dir: Path) -> None:
    """--strict: exactly brain_test1..29 and knee_test1..29, as the official script demands."""
    expected = {leaderboard_filename(a, i) for a in ANATOMIES for i in range(1, OFFICIAL_FILES_PER_ACCELERATION // 2 + 1)}
    present = {p.name for p in target_dir.glob("*.h5")}
    if present != expected:
        missing, extra = sorted(expected - present), sorted(present - expected)
        details = "; ".join(part for part in (f"missing {', '.join(missing)}" if missing else "", f"extra {', '.join(extra)}" if extra else "") if part)
        raise UserInputError(f"{target_dir}: --strict needs the official {OFFICIAL_FILES_PER_ACCELERATION} files: {details}")


def score_folder(
    target_dir: str | Path,
    recon_dir: str | Path,
    key: str = DEFAULT_KEY,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> list[SliceScore]:
    """Score every reconstruction in ``recon_dir`` against the same-named target in ``target_dir``."""
    target_dir, recon_dir = Path(target_dir), Path(recon_dir)
    return _score_pairs(_check_reconstructions(target_dir, recon_dir, key), recon_dir, key, device, progress)


def _on_cpu(device: str | torch.device) -> bool:
    return str(device).split(":")[0] == "cpu"


def _score_pair(pair: tuple[Path, Path], key: str, device: str | torch.device) -> list[SliceScore] | None:
    """Scores of one checked (target, reconstruction) pair; None if the reconstruction is not finite."""
    target_path, recon_path = pair
    name = parse_volume_name(target_path)
    with open_h5(target_path) as target_file:
        target = target_file["image_label"][()]
        max_value = require_attr(target_file, "max")
    with h5py.File(recon_path, "r") as recon_file:
        reconstruction = recon_file[key][()]
    if not np.isfinite(reconstruction).all():
        return None
    official, foreground_only = score_volume(reconstruction, target, max_value, name.anatomy, device)
    return [
        SliceScore(name.acceleration, name.anatomy, target_path.name, index, float(a), float(b))
        for index, (a, b) in enumerate(zip(official, foreground_only))
    ]


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


def retain_freed_memory() -> bool:
    """Let this process keep freed memory for its next arrays (glibc's ``mallopt``); False where unavailable.

    Scoring a slice makes some twenty temporaries of up to 600 KB. With glibc's defaults the heap above them
    is returned to the system after each slice and faulted in again for the next: about 20 % of the scorer's
    whole process at 1,856 slices (2.0 s against 1.6 s, docs/performance.md). Arrays up to 16 MiB then come from
    the heap, and up to 128 MiB of freed memory stays in the process. Meant for a scoring process
    (``leaderboard_eval.py`` calls it); it changes no result.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library already loaded into this process
    except (OSError, AttributeError):  # no mallopt (macOS, musl): keep the allocator's defaults
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, 16 << 20) and mallopt(_M_TRIM_THRESHOLD, 128 << 20))


def _score_pairs(
    pairs: list[tuple[Path, Path]], recon_dir: Path, key: str, device: str | torch.device, progress: bool
) -> list[SliceScore]:
    """Scores of checked (target, reconstruction) pairs, in order; NaN or Inf reconstructions are listed in one
    error. On the CPU volumes are scored in :data:`SCORING_THREADS` threads: OpenCV and numpy release the GIL,
    so one volume's h5 read overlaps another's SSIM and both cores compute."""
    scores, non_finite = [], []
    threads = SCORING_THREADS if _on_cpu(device) else 1
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = pool.map(lambda pair: _score_pair(pair, key, device), pairs)
        for (_, recon_path), result in tqdm(
            zip(pairs, results), total=len(pairs), desc=f"scoring {recon_dir.name}", unit="volume", disable=not progress
        ):
            if result is None:
                non_finite.append(recon_path.name)
            else:
                scores.extend(result)
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
            _check_official_names(target_dir)
        folders.append((target_dir, recon_root / f"acc{acceleration}"))
    checked = [(recon_dir, _check_reconstructions(target_dir, recon_dir, key)) for target_dir, recon_dir in folders]
    scores = []
    for recon_dir, pairs in checked:
        scores.extend(_score_pairs(pairs, recon_dir, key, device, progress))
    return LeaderboardResult(scores)


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
            writer = csv.DictWriter(handle, fieldnames=list(SliceScore.__dataclass_fields__))
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
