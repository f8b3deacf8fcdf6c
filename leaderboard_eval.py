"""Score leaderboard reconstructions exactly as the SNU FastMRI leaderboard does: the 2025 edition (SPEC §2) or,
with ``--edition 2026``, the 2026 one.

    python leaderboard_eval.py -lp ../Data/leaderboard -yp ../result/<exp_name>/reconstructions_leaderboard
    python leaderboard_eval.py --edition 2026 -lp ../Data/leaderboard -yp ../result/<exp_name>/reconstructions_leaderboard

2025: the official three lines (Total, acc4, acc8), then a brain/knee breakdown with the foreground-only SSIM_full
and fastMRI's PSNR and NMSE. 2026: the official lines (SSIM_full, SSIM_bbox and their per-acceleration details),
then the 2026 Total with the speed tiebreak, from ``--ms-per-slice`` or from the timing report that
``reconstruct_from_ckpt.py`` writes beside the reconstructions (``timing.json``). ``--csv FILE`` writes per-slice
scores; ``--strict`` (2025) demands the official 58 files per acceleration; ``--figures DIR`` (2025) draws the
best and worst slices per acceleration and the per-slice SSIM distribution.
"""
from __future__ import annotations

import argparse
from typing import Sequence

from utils.errors import ArgumentParser, UserInputError, run_cli
from utils.evaluation.edition2026 import score_leaderboard_2026
from utils.evaluation.leaderboard import DEFAULT_KEY, score_leaderboard
from utils.evaluation.memory import retain_freed_memory
from utils.evaluation.report import (
    CSV_FIELDS_2026, check_csv_path, check_figures_dir, format_report, format_report_2026, write_csv, write_figures,
)
from utils.timing_report import speed_for_tiebreak
from utils.figures import require_matplotlib


EDITIONS = (2025, 2026)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = ArgumentParser(
        description="Leaderboard SSIM of reconstructions (acc4, acc8 and total).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("-lp", "--path_leaderboard_data", default="../Data/leaderboard", help="holds acc4/image, acc8/image")
    parser.add_argument(
        "-yp", "--path_your_data", default="../result/demo/reconstructions_leaderboard", help="holds acc4/, acc8/ reconstructions"
    )
    parser.add_argument("-key", "--output_key", default=DEFAULT_KEY, help="h5 key of the reconstructions")
    parser.add_argument("-g", "--GPU_NUM", type=int, default=-1, help="CUDA device to score on; -1 for the CPU")
    parser.add_argument("--csv", default=None, help="write per-slice scores to this CSV file")
    parser.add_argument("--figures", default=None, metavar="DIR",
                        help="draw best_worst_acc{4,8}.png and ssim_distribution.png into this folder")
    parser.add_argument("--strict", action="store_true", help="demand exactly the official 58 files per acceleration (2025)")
    parser.add_argument("--edition", type=int, choices=EDITIONS, default=2025, help="which year's leaderboard score")
    parser.add_argument("--ms-per-slice", type=float, default=None, help="2026: the model time for the tiebreak (ms/slice "
                        "at batch 1); default: the timing report beside the reconstructions")
    parser.add_argument("--timing", default=None, metavar="JSON", help="2026: the timing report to read the ms/slice from "
                        "(default: <path_your_data>/timing.json, written by reconstruct_from_ckpt.py)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return parser.parse_args(argv)


def _device(gpu: int) -> str:
    if gpu < 0:
        retain_freed_memory()  # about 20 % faster on the CPU; no effect on the scores
        return "cpu"
    import torch  # only for CUDA: scoring on the CPU starts without torch

    if not torch.cuda.is_available():
        raise UserInputError(f"-g {gpu}: CUDA is not available on this machine; use -g -1 for the CPU")
    return f"cuda:{gpu}"


def _main_2026(args: argparse.Namespace, device: str) -> None:
    if args.strict or args.figures:
        raise UserInputError("--strict and --figures score the 2025 edition; leave them out with --edition 2026")
    ms_per_slice, source = speed_for_tiebreak(args.ms_per_slice, args.timing, args.path_your_data)
    scores = score_leaderboard_2026(args.path_leaderboard_data, args.path_your_data, args.output_key, device, not args.no_progress)
    print(format_report_2026(scores, ms_per_slice, source))
    if args.csv:
        write_csv(scores, args.csv, CSV_FIELDS_2026)
        print(f"per-slice scores: {args.csv}")


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    device = _device(args.GPU_NUM)
    if args.csv:
        check_csv_path(args.csv)  # before scoring, not after minutes of it
    if args.edition == 2026:
        _main_2026(args, device)
        return 0
    if args.ms_per_slice is not None or args.timing:
        raise UserInputError("--ms-per-slice and --timing set the 2026 tiebreak; add --edition 2026")
    if args.figures:
        require_matplotlib("--figures")
        check_figures_dir(args.figures)
    result = score_leaderboard(
        args.path_leaderboard_data, args.path_your_data, args.output_key, args.strict, device, not args.no_progress
    )
    print(format_report(result))
    if args.csv:
        write_csv(result.slices, args.csv)
        print(f"per-slice scores: {args.csv}")
    if args.figures:
        written = write_figures(result, args.path_leaderboard_data, args.path_your_data, args.figures, args.output_key)
        print(f"figures: {', '.join(str(path) for path in written)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
