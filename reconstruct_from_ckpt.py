"""Reconstruct the leaderboard k-space (acc4 and acc8) with a trained checkpoint.

    python3 reconstruct_from_ckpt.py -c ../result/<exp>/checkpoints/best_model.pt -p ../Data/leaderboard -g 0 -b 1

The network is rebuilt from the model config stored in the checkpoint (no model flags). Output:
``<run folder of the checkpoint>/reconstructions_leaderboard/acc{4,8}/<name>.h5`` (key 'reconstruction',
(slices, 384, 384) float32), or under ``-o``. Prints total seconds, ms per slice and whether the challenge's
3600 s budget for the whole leaderboard holds.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch

from utils.data.dataset import SliceDataset
from utils.data.transforms import ApplyFileMask
from utils.data.layout import ACCELERATIONS
from utils.errors import ArgumentParser, UserInputError, run_cli
from utils.inference.reconstruct import reconstruct_dataset
from utils.training.checkpoint import load_checkpoint, model_from_checkpoint
from utils.training.setup import build_compressor

TIME_BUDGET_S = 3600.0
LEADERBOARD_SLICES = 1809  # acc4 520 brain + 388 knee, acc8 520 brain + 381 knee (SPEC §1)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = ArgumentParser(
        description="Reconstruct leaderboard k-space with a checkpoint.", formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("-c", "--checkpoint", default="../result/demo/checkpoints/best_model.pt", help="checkpoint file")
    parser.add_argument("-p", "--path_data", default="../Data/leaderboard", help="folder holding acc4/kspace and acc8/kspace")
    parser.add_argument("-g", "--GPU_NUM", type=int, default=0, help="CUDA device; -1 (or no CUDA) runs on the CPU")
    parser.add_argument("-b", "--batch_size", type=int, default=1, help="slices per forward pass (within one volume)")
    parser.add_argument("-o", "--output", default=None, help="output folder (default: <run>/reconstructions_leaderboard)")
    parser.add_argument("--num_workers", type=int, default=2, help="data loading processes")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return parser.parse_args(argv)


def _device(gpu: int) -> torch.device:
    if gpu >= 0 and torch.cuda.is_available():
        if gpu >= torch.cuda.device_count():
            raise UserInputError(f"-g {gpu}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device(f"cuda:{gpu}")
    return torch.device("cpu")


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if args.batch_size < 1 or args.num_workers < 0:
        raise UserInputError(f"-b must be >= 1 and --num_workers >= 0, got {args.batch_size} and {args.num_workers}")
    checkpoint_path = Path(args.checkpoint)
    data_root = Path(args.path_data)
    checkpoint = load_checkpoint(checkpoint_path)
    compressor = build_compressor((checkpoint.get("config") or {}).get("compressor"))  # as in training
    datasets = {
        acc: SliceDataset(data_root / f"acc{acc}", ApplyFileMask(compressor), kspace_only=True) for acc in ACCELERATIONS
    }
    device = _device(args.GPU_NUM)
    model = model_from_checkpoint(checkpoint, checkpoint_path).to(device)
    output = Path(args.output) if args.output else checkpoint_path.resolve().parent.parent / "reconstructions_leaderboard"
    print(f"checkpoint {checkpoint_path} (epoch {checkpoint.get('epoch')}), device {device}, output {output}")

    slices, seconds = 0, 0.0
    for acc, dataset in datasets.items():
        timing = reconstruct_dataset(
            model, dataset, output / f"acc{acc}", device, args.batch_size, args.num_workers, not args.no_progress, f"acc{acc}"
        )
        print(f"acc{acc}: {timing.slices} slices in {timing.seconds:.1f} s ({timing.ms_per_slice:.1f} ms/slice)")
        slices, seconds = slices + timing.slices, seconds + timing.seconds
    per_slice = seconds / max(slices, 1)
    within = "yes" if seconds <= TIME_BUDGET_S else "NO"
    print(f"total: {slices} slices in {seconds:.1f} s ({1000 * per_slice:.1f} ms/slice); within the {TIME_BUDGET_S:.0f} s budget: {within}")
    if slices != LEADERBOARD_SLICES:
        print(f"at this rate the official {LEADERBOARD_SLICES}-slice leaderboard would take {per_slice * LEADERBOARD_SLICES:.0f} s")
    return 0


if __name__ == "__main__":
    run_cli(main)
