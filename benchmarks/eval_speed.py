"""The leaderboard scorer against the official script's per-slice loop, at the official size, in one run.

    python -m benchmarks.eval_speed                          # 116 volumes x 16 slices = 1,856 slices
    python -m benchmarks.eval_speed --volumes 8 --slices 2   # smaller

A leaderboard of ``--volumes`` volumes (half brain, half knee, split over acc4 and acc8) of ``--slices`` slices
each is written to a temporary folder: targets and ``max`` come from slices of the synthetic ``tiny`` preset
(repeated), the "reconstructions" are their zero-filled ``image_input``. Both scorers then run twice:

- in this process (scoring only): ``utils.evaluation.leaderboard.score_leaderboard`` against
  ``utils.evaluation.official_reference.official_folder_ssim`` (the official loop, reopening both files for
  every slice);
- as whole processes, start-up and imports included: ``python leaderboard_eval.py`` against
  ``python -m utils.evaluation.official_reference`` (the same loop behind the official script's three lines).

Each line prints the ratio and the equality check: the largest per-slice difference, and whether the three
printed lines are identical. Each measurement is repeated ``--repeats`` times, the two sides interleaved, and
the fastest of each side is compared, so that other work on the machine disturbs the ratio as little as it can.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from utils.data.layout import leaderboard_filename
from utils.data.synthetic.generate import generate
from utils.evaluation.leaderboard import score_leaderboard
from utils.evaluation.official_reference import official_folder_ssim

REPO = Path(__file__).resolve().parents[1]


def _source_slices(scratch: Path) -> dict[str, list[tuple[np.ndarray, np.ndarray, float]]]:
    """(target, zero-filled input, max) of every slice of a generated tiny leaderboard, per anatomy."""
    data = scratch / "source"
    generate(data, "tiny", workers=1, progress=False, splits=("leaderboard",))
    slices: dict[str, list] = {"brain": [], "knee": []}
    for path in sorted(data.glob("leaderboard/acc*/image/*.h5")):
        with h5py.File(path, "r") as file:
            for index in range(file["image_label"].shape[0]):
                slices[path.name.split("_")[0]].append((file["image_label"][index], file["image_input"][index], float(file.attrs["max"])))
    return slices


def build_leaderboard(scratch: Path, volumes: int, slices_per_volume: int) -> tuple[Path, Path]:
    """``volumes`` files of ``slices_per_volume`` slices under ``scratch/{leaderboard,recon}/acc{4,8}``."""
    source = _source_slices(scratch)
    leaderboard, recon = scratch / "leaderboard", scratch / "recon"
    per_folder = volumes // 2
    for acceleration in (4, 8):
        (leaderboard / f"acc{acceleration}/image").mkdir(parents=True)
        (recon / f"acc{acceleration}").mkdir(parents=True)
        for index in range(per_folder):
            anatomy = "brain" if index % 2 == 0 else "knee"
            pool = source[anatomy]
            picked = [pool[(index + s) % len(pool)] for s in range(slices_per_volume)]
            name = leaderboard_filename(anatomy, index // 2 + 1)
            with h5py.File(leaderboard / f"acc{acceleration}/image/{name}", "w") as file:
                file.create_dataset("image_label", data=np.stack([p[0] for p in picked]))
                file.attrs["max"] = max(p[2] for p in picked)
            with h5py.File(recon / f"acc{acceleration}/{name}", "w") as file:
                file.create_dataset("reconstruction", data=np.stack([p[1] for p in picked]))
    return leaderboard, recon


def _timed_process(command: list[str]) -> tuple[float, list[str]]:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, [line for line in result.stdout.splitlines() if line.startswith("Leaderboard SSIM")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--volumes", type=int, default=116, help="files in all (split over acc4/acc8, brain/knee)")
    parser.add_argument("--slices", type=int, default=16, help="slices per file")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions of each side; the fastest counts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        leaderboard, recon = build_leaderboard(Path(scratch), args.volumes, args.slices)
        slices = args.volumes // 2 * 2 * args.slices

        def official_loop() -> list[float]:
            scores = []
            for acceleration in (4, 8):
                names = list(dict.fromkeys(s.fname for s in result.slices if s.acceleration == acceleration))
                scores += official_folder_ssim(leaderboard / f"acc{acceleration}/image", recon / f"acc{acceleration}", names)
            return scores

        ours = reference = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = score_leaderboard(leaderboard, recon, progress=False)
            ours = min(ours, time.perf_counter() - start)
            start = time.perf_counter()
            official = official_loop()
            reference = min(reference, time.perf_counter() - start)
        difference = np.abs(np.array([s.ssim for s in result.slices]) - np.array(official)).max()
        print(f"{slices} slices, in process: ours {ours:.2f} s, official loop {reference:.2f} s, "
              f"ratio {reference / ours:.1f}x, largest per-slice difference {difference:.1e}")

        ours_process = official_process = float("inf")
        for _ in range(args.repeats):
            seconds, our_lines = _timed_process([sys.executable, "leaderboard_eval.py", "-lp", str(leaderboard), "-yp", str(recon), "--no-progress"])
            ours_process = min(ours_process, seconds)
            seconds, official_lines = _timed_process([sys.executable, "-m", "utils.evaluation.official_reference", "-lp", str(leaderboard), "-yp", str(recon)])
            official_process = min(official_process, seconds)
        same = "identical" if our_lines == official_lines else f"DIFFERENT: {our_lines} vs {official_lines}"
        print(f"{slices} slices, whole processes: ours {ours_process:.2f} s, official {official_process:.2f} s, "
              f"ratio {official_process / ours_process:.1f}x, printed lines {same}")
        print("\n".join(our_lines))


if __name__ == "__main__":
    main()
