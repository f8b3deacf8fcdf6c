"""The leaderboard scorer against the official script's per-slice loop, at the official size, in one run.

    python -m benchmarks.eval_speed                          # 116 volumes x 16 slices = 1,856 slices
    python -m benchmarks.eval_speed --volumes 8 --slices 2   # smaller
    python -m benchmarks.eval_speed --edition 2026           # SSIM_full and SSIM_bbox against the 2026 loop

A leaderboard of ``--volumes`` volumes (half brain, half knee, split over acc4 and acc8) of ``--slices`` slices
each is written to a temporary folder: targets and ``max`` come from slices of the synthetic ``tiny`` preset
(repeated), the "reconstructions" are their zero-filled ``image_input``. Both scorers then run twice:

- in this process (scoring only): ``utils.evaluation.leaderboard.score_leaderboard`` against
  ``utils.evaluation.official_reference.official_folder_ssim`` (the official loop, reopening both files for
  every slice);
- as whole processes, start-up and imports included: ``python leaderboard_eval.py`` against
  ``python -m utils.evaluation.official_reference`` (the same loop behind the official script's three lines).

With ``--edition 2026`` the targets carry their slices' lesion boxes and the sides are
``utils.evaluation.edition2026.score_leaderboard_2026`` against ``utils.evaluation.official_reference_2026`` (in
process: the largest difference of SSIM_full and SSIM_bbox per acceleration), then ``leaderboard_eval.py
--edition 2026`` against ``python -m utils.evaluation.official_reference_2026``.

Each line prints the ratio and the equality check: the largest per-slice difference, and whether the
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

from utils.data.annotations import annotations_attr, read_annotations
from utils.data.layout import leaderboard_filename
from utils.data.synthetic.generate import generate
from utils.evaluation.edition2026 import score_leaderboard_2026
from utils.evaluation.leaderboard import score_leaderboard
from utils.evaluation.official_reference import official_folder_ssim
from utils.evaluation.official_reference_2026 import official_2026_folder
from utils.metrics.score import edition_2026

REPO = Path(__file__).resolve().parents[1]


def _source_slices(scratch: Path) -> dict[str, list[tuple[np.ndarray, np.ndarray, float, list]]]:
    """(target, zero-filled input, max, lesion boxes) of every slice of a generated tiny leaderboard, per anatomy."""
    data = scratch / "source"
    generate(data, "tiny", workers=1, progress=False, splits=("leaderboard",))
    slices: dict[str, list] = {"brain": [], "knee": []}
    for path in sorted(data.glob("leaderboard/acc*/image/*.h5")):
        boxes = read_annotations(path)
        with h5py.File(path, "r") as file:
            for index in range(file["image_label"].shape[0]):
                slices[path.name.split("_")[0]].append((file["image_label"][index], file["image_input"][index],
                                                        float(file.attrs["max"]), boxes.get(index, [])))
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
                file.attrs["annotations"] = annotations_attr({s: p[3] for s, p in enumerate(picked)})
            with h5py.File(recon / f"acc{acceleration}/{name}", "w") as file:
                file.create_dataset("reconstruction", data=np.stack([p[1] for p in picked]))
    return leaderboard, recon


def _timed_process(command: list[str]) -> tuple[float, list[str]]:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, [line for line in result.stdout.splitlines() if line.startswith(("Leaderboard SSIM", "SSIM_"))]


def _compare_2025(leaderboard: Path, recon: Path, slices: int, repeats: int) -> None:
    ours = reference = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = score_leaderboard(leaderboard, recon, progress=False)
        ours = min(ours, time.perf_counter() - start)
        start = time.perf_counter()
        official = []
        for acceleration in (4, 8):
            names = list(dict.fromkeys(s.fname for s in result.slices if s.acceleration == acceleration))
            official += official_folder_ssim(leaderboard / f"acc{acceleration}/image", recon / f"acc{acceleration}", names)
        reference = min(reference, time.perf_counter() - start)
    difference = np.abs(np.array([s.ssim for s in result.slices]) - np.array(official)).max()
    print(f"{slices} slices, in process: ours {ours:.2f} s, official loop {reference:.2f} s, "
          f"ratio {reference / ours:.1f}x, largest per-slice difference {difference:.1e}")


def _compare_2026(leaderboard: Path, recon: Path, slices: int, repeats: int) -> None:
    ours = reference = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = edition_2026(score_leaderboard_2026(leaderboard, recon, progress=False))
        ours = min(ours, time.perf_counter() - start)
        start = time.perf_counter()
        official = {acc: official_2026_folder(leaderboard / f"acc{acc}/image", recon / f"acc{acc}") for acc in (4, 8)}
        reference = min(reference, time.perf_counter() - start)
    difference = max(max(abs(result.ssim_full[acc] - official[acc][0]), abs(result.ssim_bbox[acc] - official[acc][1])) for acc in (4, 8))
    print(f"{slices} slices, {sum(result.boxes.values())} boxes, in process: ours {ours:.2f} s, official loop {reference:.2f} s, "
          f"ratio {reference / ours:.1f}x, largest difference of SSIM_full / SSIM_bbox per acceleration {difference:.1e}")


def _compare_processes(ours_command: list[str], official_command: list[str], slices: int, repeats: int) -> None:
    ours = official = float("inf")
    for _ in range(repeats):
        seconds, our_lines = _timed_process(ours_command)
        ours = min(ours, seconds)
        seconds, official_lines = _timed_process(official_command)
        official = min(official, seconds)
    same = "identical" if our_lines == official_lines else f"DIFFERENT: {our_lines} vs {official_lines}"
    print(f"{slices} slices, whole processes: ours {ours:.2f} s, official {official:.2f} s, "
          f"ratio {official / ours:.1f}x, printed lines {same}")
    print("\n".join(our_lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--volumes", type=int, default=116, help="files in all (split over acc4/acc8, brain/knee)")
    parser.add_argument("--slices", type=int, default=16, help="slices per file")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions of each side; the fastest counts")
    parser.add_argument("--edition", type=int, choices=(2025, 2026), default=2025, help="which leaderboard score")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        leaderboard, recon = build_leaderboard(Path(scratch), args.volumes, args.slices)
        slices = args.volumes // 2 * 2 * args.slices
        paths = ["-lp", str(leaderboard), "-yp", str(recon)]
        if args.edition == 2025:
            _compare_2025(leaderboard, recon, slices, args.repeats)
            reference = [sys.executable, "-m", "utils.evaluation.official_reference", *paths]
        else:
            _compare_2026(leaderboard, recon, slices, args.repeats)
            reference = [sys.executable, "-m", "utils.evaluation.official_reference_2026", *paths]
        ours = [sys.executable, "leaderboard_eval.py", "--edition", str(args.edition), *paths, "--no-progress"]
        _compare_processes(ours, reference, slices, args.repeats)


if __name__ == "__main__":
    main()
