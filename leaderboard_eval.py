"""Score leaderboard reconstructions exactly as the SNU FastMRI 2025 leaderboard does (SPEC §2).

    python leaderboard_eval.py -lp ../Data/leaderboard -yp ../result/<exp_name>/reconstructions_leaderboard

Prints the official three lines (Total, acc4, acc8), then a brain/knee breakdown with the foreground-only
SSIM_full of the 2026 edition. ``--csv FILE`` writes per-slice scores; ``--strict`` demands the official 58
files per acceleration; ``--figures DIR`` draws the best and worst slices per acceleration and the per-slice
SSIM distribution.
"""
from __future__ import annotations

import argparse
from typing import Sequence

from utils.errors import ArgumentParser, UserInputError, run_cli
from utils.evaluation.leaderboard import DEFAULT_KEY, score_leaderboard
from utils.evaluation.memory import retain_freed_memory
from utils.evaluation.report import check_csv_path, check_figures_dir, format_report, write_csv, write_figures
from utils.figures import require_matplotlib


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
    parser.add_argument("--strict", action="store_true", help="demand exactly the official 58 files per acceleration")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    device = "cpu"
    if args.GPU_NUM >= 0:
        import torch  # only for CUDA: scoring on the CPU starts without torch

        if not torch.cuda.is_available():
            raise UserInputError(f"-g {args.GPU_NUM}: CUDA is not available on this machine; use -g -1 for the CPU")
        device = f"cuda:{args.GPU_NUM}"
    else:
        retain_freed_memory()  # about 20 % faster on the CPU; no effect on the scores
    if args.csv:
        check_csv_path(args.csv)  # before scoring, not after minutes of it
    if args.figures:
        require_matplotlib("--figures")
        check_figures_dir(args.figures)
    result = score_leaderboard(
        args.path_leaderboard_data, args.path_your_data, args.output_key, args.strict, device, not args.no_progress
    )
    print(format_report(result))
    if args.csv:
        write_csv(result, args.csv)
        print(f"per-slice scores: {args.csv}")
    if args.figures:
        written = write_figures(result, args.path_leaderboard_data, args.path_your_data, args.figures, args.output_key)
        print(f"figures: {', '.join(str(path) for path in written)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
