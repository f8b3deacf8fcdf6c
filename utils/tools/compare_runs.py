"""Where do two training runs first differ? The reproducibility report the challenge organisers ask for.

    python -m utils.tools.compare_runs ../result/run_a ../result/run_b [--atol 0]

For each log a run writes (per optimizer step, per epoch train loss, validation loss and SSIM) it prints the
first row where the two runs differ by more than ``--atol`` and by how much, then the largest difference over
the rows both have; finally the largest weight difference between the two ``checkpoints/model.pt``.
Exit status 0 when everything matches, 1 when something differs, 2 on a user error.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from utils.errors import UserInputError, file_error, run_cli
from utils.gates.torch_floor import require_safe_torch
from utils.model.checkpoint import load_checkpoint

LOGS = (
    ("train_step_loss_log.npy", "step"),
    ("train_loss_log.npy", "epoch"),
    ("val_loss_log.npy", "epoch"),
    ("val_ssim_log.npy", "epoch"),
)


def load_log(run: Path, name: str) -> np.ndarray | None:
    path = run / name
    if not path.is_file():
        return None
    try:
        log = np.load(path)
    except (OSError, ValueError):
        raise file_error(path, "is not a readable .npy log") from None
    if log.ndim != 2 or log.shape[1] != 2:
        raise file_error(path, f"has shape {log.shape}, expected (rows, 2) of (index, value)")
    return log


def compare_logs(a: np.ndarray, b: np.ndarray, unit: str, atol: float) -> tuple[bool, str]:
    """(identical, report line) for two (index, value) logs."""
    rows = min(len(a), len(b))
    difference = np.abs(a[:rows, 1] - b[:rows, 1])
    differs = np.flatnonzero((difference > atol) | (a[:rows, 0] != b[:rows, 0]))
    length_note = "" if len(a) == len(b) else f"; lengths differ ({len(a)} vs {len(b)} rows)"
    if differs.size == 0:
        return len(a) == len(b), f"identical over {rows} {unit}s (largest difference {difference.max(initial=0):.3g}){length_note}"
    first = differs[0]
    relative = difference[first] / max(abs(a[first, 1]), 1e-300)
    return False, (
        f"first differs at {unit} {a[first, 0]:g}: {a[first, 1]:.10g} vs {b[first, 1]:.10g} "
        f"(|diff| {difference[first]:.3g}, relative {relative:.3g}); largest |diff| {difference.max():.3g} "
        f"at {unit} {a[np.argmax(difference), 0]:g}; {differs.size} of {rows} {unit}s differ{length_note}"
    )


def compare_weights(run_a: Path, run_b: Path) -> tuple[bool, str] | None:
    paths = [run / "checkpoints" / "model.pt" for run in (run_a, run_b)]
    if not all(path.is_file() for path in paths):
        return None
    state_a, state_b = (load_checkpoint(path)["model"] for path in paths)
    if state_a.keys() != state_b.keys():
        return False, "the two models have different parameters"
    largest = max((float((state_a[key].double() - state_b[key].double()).abs().max()) for key in state_a if state_a[key].numel()), default=0.0)
    identical = all(torch.equal(state_a[key], state_b[key]) for key in state_a)
    return identical, ("bit-identical" if identical else f"largest |difference| {largest:.3g}")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.tools.compare_runs", description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--atol", type=float, default=0.0, help="differences up to this are treated as equal")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    args = parser.parse_args(argv)
    for run in (args.run_a, args.run_b):
        if not run.is_dir():
            raise UserInputError(f"{run}: run folder not found")
    identical, compared = True, 0
    for name, unit in LOGS:
        a, b = load_log(args.run_a, name), load_log(args.run_b, name)
        if a is None or b is None:
            continue
        same, report = compare_logs(a, b, unit, args.atol)
        identical &= same
        compared += 1
        print(f"{name:<24} {report}")
    if compared == 0:
        raise UserInputError(f"{args.run_a}, {args.run_b}: no loss logs in common to compare")
    weights = compare_weights(args.run_a, args.run_b)
    if weights is not None:
        identical &= weights[0]
        print(f"{'final weights':<24} {weights[1]}")
    print("runs are identical" if identical else "runs differ")
    return 0 if identical else 1


if __name__ == "__main__":
    run_cli(main, checks=[require_safe_torch])
