"""``python -m utils.data.convert_fastmri --src DIR [DIR ...] --out ROOT``: fastMRI files -> challenge layout."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from utils.data.convert_fastmri.convert import DEFAULT_SEED, annotation_warnings, convert
from utils.data.convert_fastmri.plan import CHALLENGE_SPLIT, MaskSpec
from utils.data.layout import ANATOMIES
from utils.data.mask_types import MASK_TYPES
from utils.data.masks import CENTER_FRACTION
from utils.errors import ArgumentParser, run_cli


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="python -m utils.data.convert_fastmri",
        description="Convert public fastMRI multicoil brain/knee files into the SNU FastMRI challenge layout "
        "(train, val, leaderboard/acc4, leaderboard/acc8).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--src", nargs="+", required=True, metavar="DIR", help="folders (or files) of fastMRI multicoil .h5 files"
    )
    parser.add_argument("--out", required=True, metavar="ROOT", help="folder that receives train/, val/ and leaderboard/")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="fixes the split, the acc4/acc8 assignment and the masks")
    parser.add_argument(
        "--split", nargs=3, type=float, default=list(CHALLENGE_SPLIT), metavar=("TRAIN", "VAL", "LEADERBOARD"),
        help="weights of the splits, per anatomy (default: the challenge's 85 : 15 : 29)",
    )
    parser.add_argument("--anatomy", choices=ANATOMIES, default=None, help="anatomy of every file (default: from the file names)")
    parser.add_argument("--mask-type", default="equispaced", choices=MASK_TYPES, help="mask family (equispaced: the challenge's)")
    parser.add_argument("--center-fraction", type=float, default=CENTER_FRACTION, help="fraction of W in the centre block")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="parallel processes")
    parser.add_argument(
        "--annotations", nargs="+", default=[], metavar="CSV",
        help="fastMRI+ annotation CSVs (microsoft/fastmri-plus Annotations/knee.csv, brain.csv): their boxes go "
        "into the image files' 'annotations' attribute, in the 384x384 space of image_label",
    )
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="convert only the first N files")
    parser.add_argument("--overwrite", action="store_true", help="replace a conversion made with other files or settings")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    mask_spec = MaskSpec(args.mask_type, args.center_fraction)
    report = convert(
        args.src, args.out, args.seed, args.split, args.anatomy, mask_spec, args.workers, args.limit, args.overwrite,
        progress=not args.no_progress, annotations=args.annotations,
    )
    for line in annotation_warnings(report):
        print(f"warning: {line}", file=sys.stderr)
    counts = report.counts()
    print(
        f"{args.out}: {len(report.planned)} volumes (train {counts['train']}, val {counts['val']}, leaderboard "
        f"{counts['leaderboard']}; seed {args.seed}), {len(report.written)} converted now"
    )
    if mask_spec.kind != "equispaced":
        print(f"note: --mask-type {mask_spec.kind} is not equispaced, so image_grappa holds the zero-filled image_input")
    return 0


if __name__ == "__main__":
    run_cli(main)
