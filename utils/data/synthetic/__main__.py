"""``python -m utils.data.synthetic --out ../Data --preset demo``: write a synthetic challenge dataset.

``--format fastmri`` writes the same kind of volumes as public fastMRI multicoil files instead (the input of
``python -m utils.data.convert_fastmri``).
"""
from __future__ import annotations

import argparse
import os
from typing import Sequence

from utils.data.synthetic.generate import DEFAULT_SEED, FORMATS, estimate_bytes, generate
from utils.data.synthetic.presets import PRESETS, get_preset
from utils.errors import ArgumentParser, run_cli


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="python -m utils.data.synthetic",
        description="Write a synthetic dataset in the SNU FastMRI challenge layout (train, val, leaderboard).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--out", default=None,
        help="folder that receives train/, val/ and leaderboard/ (default ../Data; with --format fastmri, ../Data_fastmri)",
    )
    parser.add_argument("--preset", default="demo", choices=sorted(PRESETS), help="dataset size")
    parser.add_argument(
        "--format", default="challenge", choices=FORMATS,
        help="the challenge layout, or public fastMRI multicoil files (file_brain_*.h5, file1*.h5)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed; the same seed writes the same data")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="parallel processes")
    parser.add_argument("--overwrite", action="store_true", help="replace data made with another preset or seed")
    parser.add_argument("--estimate", action="store_true", help="print the disk size the preset needs and exit")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if args.estimate:
        kspace_bytes, image_bytes = estimate_bytes(get_preset(args.preset), args.seed, args.format)
        total = kspace_bytes + image_bytes
        print(f"preset {args.preset}: {total / 1e9:.2f} GB ({kspace_bytes / 1e9:.2f} GB k-space, {image_bytes / 1e9:.2f} GB images)")
        return 0
    out = args.out or ("../Data_fastmri" if args.format == "fastmri" else "../Data")
    written = generate(out, args.preset, args.seed, args.workers, args.overwrite, file_format=args.format)
    kind = "fastMRI-format " if args.format == "fastmri" else ""
    print(f"{out}: wrote {len(written)} {kind}volumes of preset '{args.preset}' (seed {args.seed})")
    return 0


if __name__ == "__main__":
    run_cli(main)
