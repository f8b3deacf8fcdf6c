"""Score an expert set (or a shared model) on a train/val split through its manifest.

    python -m utils.tools.validate_experts ../result/experts4/experts.yaml --data ../Data_demo
    python -m utils.tools.validate_experts shared.yaml --data ../Data_demo      # experts: {all: <checkpoint>}

Every volume is routed once by the manifest's router and reconstructed by its expert; each slice scores the
leaderboard SSIM against ``image_label``. Prints SSIM per anatomy x acceleration, per acceleration and the
Total ``(acc4 + acc8) / 2``, next to the zero-filled input, and which expert served each group.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch

from utils.errors import ArgumentParser, UserInputError, run_cli
from utils.experts.serve import load_expert_set
from utils.experts.validate import format_validation, validate_experts
from utils.gates.torch_floor import require_safe_torch

__all__ = ["main"]


def main(argv: Sequence[str]) -> int:
    parser = ArgumentParser(description="Validation SSIM of an expert manifest.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("manifest", help="expert manifest (.yaml)")
    parser.add_argument("--data", default="../Data", help="data root")
    parser.add_argument("--split", default="val", help="split folder under --data")
    parser.add_argument("-g", "--GPU_NUM", type=int, default=-1, help="CUDA device; -1 runs on the CPU")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    args = parser.parse_args(argv)
    if args.GPU_NUM >= 0 and not torch.cuda.is_available():
        raise UserInputError(f"-g {args.GPU_NUM}: this machine has no CUDA device; use -g -1")
    device = torch.device(f"cuda:{args.GPU_NUM}" if args.GPU_NUM >= 0 else "cpu")
    experts = load_expert_set(args.manifest, device)
    split_dir = Path(args.data) / args.split
    result = validate_experts(experts, split_dir, device)
    print(format_validation(result, f"{args.manifest} (router {experts.manifest.router}) on {split_dir}: {len(result.scores)} slices"))
    return 0


if __name__ == "__main__":
    run_cli(main, checks=[require_safe_torch])
