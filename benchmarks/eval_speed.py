"""Slices per second of the leaderboard scorer against the official script's per-slice loop.

    python -m benchmarks.eval_speed                      # generates a demo-size synthetic leaderboard
    python -m benchmarks.eval_speed --data ../Data       # or scores an existing one

The "reconstruction" is the zero-filled ``image_input`` (any float32 volume times the same). Both paths
score the same files; the script also prints the largest per-slice difference between them.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from utils.data.synthetic.generate import generate
from utils.evaluation.leaderboard import score_leaderboard
from utils.evaluation.official_reference import official_folder_ssim


def _write_zero_filled(leaderboard: Path, out: Path) -> None:
    for image_path in sorted(leaderboard.glob("acc*/image/*.h5")):
        folder = out / image_path.parent.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        with h5py.File(image_path, "r") as source, h5py.File(folder / image_path.name, "w") as target:
            target.create_dataset("reconstruction", data=source["image_input"][()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="a Data/ root with leaderboard/ (default: generate one)")
    parser.add_argument("--preset", default="demo", help="preset generated when --data is not given")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions of the vectorised scorer")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        data = args.data
        if data is None:
            data = scratch / "Data"
            generate(data, args.preset, workers=2, splits=("leaderboard",))
        leaderboard = data / "leaderboard"
        recon = scratch / "recon"
        _write_zero_filled(leaderboard, recon)

        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = score_leaderboard(leaderboard, recon, progress=False)
            times.append(time.perf_counter() - start)
        vectorised = min(times)

        start = time.perf_counter()
        official = []
        for acceleration in (4, 8):
            target_dir = leaderboard / f"acc{acceleration}" / "image"
            names = [s.fname for s in result.slices if s.acceleration == acceleration and s.slice_idx == 0]
            official += official_folder_ssim(target_dir, recon / f"acc{acceleration}", names)
        naive = time.perf_counter() - start

    slices = result.count()
    ours = np.array([s.ssim for s in result.slices])
    print(f"slices: {slices}  (torch threads: {torch.get_num_threads()})")
    print(f"vectorised scorer (per volume, batched SSIM): {slices / vectorised:8.1f} slices/s  ({vectorised:.2f} s, best of {args.repeats})")
    print(f"official per-slice loop (reopens h5 per slice): {slices / naive:8.1f} slices/s  ({naive:.2f} s)")
    print(f"speed-up: {naive / vectorised:.1f}x   largest per-slice difference: {np.abs(ours - np.array(official)).max():.2e}")
    print(f"total SSIM (zero-filled): {result.total:.4f}")


if __name__ == "__main__":
    main()
