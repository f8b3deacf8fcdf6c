"""Reconstruct the leaderboard k-space (acc4 and acc8) with a trained checkpoint.

    python3 reconstruct_from_ckpt.py -c ../result/<exp>/checkpoints/best_model.pt -p ../Data/leaderboard -g 0 -b 1
    torchrun --nproc_per_node=2 reconstruct_from_ckpt.py -c ... -p ...   # volumes shared among 2 ranks (GPUs)
    python3 reconstruct_from_ckpt.py -c ../result/experts4/experts.yaml -p ../Data/leaderboard -g 0   # experts
    python3 reconstruct_from_ckpt.py -c ... --tta flip   # mean with the reflected input's output (2 passes per slice)

With ``-c`` naming an expert manifest (a ``.yaml`` file, docs/experts.md) each volume is routed once and
reconstructed by its expert; output under ``<manifest folder>/reconstructions_leaderboard`` (or ``-o``); the
report adds the routing time, which expert (or ensemble of checkpoints) served how many volumes, every unsure
decision, and the budget with loading and routing projected to the official leaderboard.

``--tta flip`` averages every reconstruction with the model's reconstruction of the left-right reflected input,
mapped back (:mod:`utils.inference.tta`); its second pass is model time. Without ``--tta`` a manifest's own
``tta:`` applies (none for a checkpoint); ``--tta`` overrides it.

The network is rebuilt from the model config stored in the checkpoint (no model flags). Output:
``<run folder of the checkpoint>/reconstructions_leaderboard/acc{4,8}/<name>.h5`` (key 'reconstruction',
(slices, 384, 384) float32), or under ``-o``.

Reports the load time (checkpoint, model, device), the wall-clock time per folder (data loading and writing
included), the pure model ms/slice in the 2026 harness convention (after 5 untimed warm-up slices, the device
synchronised around each forward pass), the projection of both to the official 1,809 slices, and whether the
challenge's 3600 s budget holds.

Under torchrun every rank loads the model on its own device (``cuda:LOCAL_RANK``, or the CPU with ``-g -1``)
and reconstructs the volumes ``rank, rank + N, ...`` of each folder; only that rank writes them. Rank 0 prints
the report gathered from all ranks.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Sequence

import torch

from utils.data.dataset import SliceDataset
from utils.data.layout import ACCELERATIONS
from utils.distributed import init_distributed
from utils.errors import ArgumentParser, UserInputError, run_cli
from utils.experts.manifest import is_manifest
from utils.experts.serve import ExpertsServed, load_expert_set, reconstruct_folder_with_experts, routing_report
from utils.gates.torch_floor import require_safe_torch
from utils.inference.load import load_reconstructor
from utils.inference.reconstruct import ModelClock, format_timing, reconstruct_dataset
from utils.inference.tta import TTA_MODES
from utils.timing_report import write_timing_report


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = ArgumentParser(
        description="Reconstruct leaderboard k-space with a checkpoint.", formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("-c", "--checkpoint", default="../result/demo/checkpoints/best_model.pt",
                        help="checkpoint file, or an expert manifest (.yaml, docs/experts.md)")
    parser.add_argument("-p", "--path_data", default="../Data/leaderboard", help="folder holding acc4/kspace and acc8/kspace")
    parser.add_argument("-g", "--GPU_NUM", type=int, default=0, help="CUDA device; -1 (or no CUDA) runs on the CPU")
    parser.add_argument("-b", "--batch_size", type=int, default=1, help="slices per forward pass (within one volume)")
    parser.add_argument("-o", "--output", default=None, help="output folder (default: <run>/reconstructions_leaderboard)")
    parser.add_argument("--num_workers", type=int, default=2, help="data loading processes")
    parser.add_argument("--tta", choices=TTA_MODES, default=None,
                        help="test-time augmentation: flip averages with the reflected input's output (default: a "
                             "manifest's tta, else none)")
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
    distributed, rank_device = init_distributed("cpu" if args.GPU_NUM < 0 else "cuda")  # torchrun: one GPU per rank
    try:  # close() frees the process group on every way out (see Distributed.close)
        device = rank_device or _device(args.GPU_NUM)
        if is_manifest(checkpoint_path):
            return _main_experts(args, checkpoint_path, data_root, distributed, device)
        return _main_checkpoint(args, checkpoint_path, data_root, distributed, device)
    finally:
        distributed.close()


def _main_checkpoint(args: argparse.Namespace, checkpoint_path: Path, data_root: Path, distributed, device: torch.device) -> int:
    """One checkpoint for both accelerations."""
    load_start = time.perf_counter()
    model = load_reconstructor(checkpoint_path, device, args.tta or "none")
    load_seconds = time.perf_counter() - load_start
    datasets = {acc: SliceDataset(data_root / f"acc{acc}", model.transform, kspace_only=True) for acc in ACCELERATIONS}
    output = Path(args.output) if args.output else checkpoint_path.resolve().parent.parent / "reconstructions_leaderboard"
    report = print if distributed.is_main else (lambda *_: None)
    ranks = f", {distributed.world_size} ranks (each reconstructs and writes its own volumes)" if distributed.enabled else ""
    report(f"checkpoint {checkpoint_path} (epoch {model.epoch}), test-time augmentation {model.tta}, device {device}{ranks}, output {output}")

    clock = ModelClock(device)
    slices, seconds = 0, 0.0
    for acc, dataset in datasets.items():
        timing = reconstruct_dataset(
            model, dataset, output / f"acc{acc}", device, args.batch_size, args.num_workers,
            not args.no_progress and distributed.is_main, f"acc{acc}", clock, distributed.rank, distributed.world_size,
        )
        per_rank = distributed.gather((timing.slices, timing.seconds))
        acc_slices, acc_seconds = sum(n for n, _ in per_rank), max(t for _, t in per_rank)
        report(f"acc{acc}: {acc_slices} slices in {acc_seconds:.1f} s ({1000 * acc_seconds / max(acc_slices, 1):.1f} "
               f"ms/slice, data loading and writing included)")
        slices, seconds = slices + acc_slices, seconds + acc_seconds
    load_seconds = max(distributed.gather(load_seconds))
    report(f"load: {load_seconds:.1f} s (checkpoint, model, device{'; the slowest rank' if distributed.enabled else ''})")
    clock = ModelClock.combined(distributed.gather(clock.state()), device)
    report(format_timing(load_seconds, slices, seconds, clock, args.batch_size, distributed.world_size))
    _write_timing(output, clock, args.batch_size, device, distributed)
    return 0


def _write_timing(output: Path, clock: ModelClock, batch_size: int, device: torch.device, distributed) -> None:
    """``output/timing.json`` on rank 0: the model ms/slice the 2026 scorer's tiebreak reads."""
    if distributed.is_main:
        path = write_timing_report(output, clock.ms_per_slice, clock.slices, clock.untimed_slices, batch_size, str(device),
                                   distributed.world_size)
        print(f"timing report: {path} (leaderboard_eval.py --edition 2026 reads it for the speed tiebreak)")


def _main_experts(args: argparse.Namespace, manifest_path: Path, data_root: Path, distributed, device: torch.device) -> int:
    """``-c EXPERTS.yaml``: the manifest is checked and every checkpoint loaded before anything is written."""
    experts = load_expert_set(manifest_path, device, args.tta)
    load_seconds = max(distributed.gather(experts.load_seconds))
    output = Path(args.output) if args.output else manifest_path.resolve().parent / "reconstructions_leaderboard"
    folders = {acc: data_root / f"acc{acc}" for acc in ACCELERATIONS}
    report = print if distributed.is_main else (lambda *_: None)
    ranks = f", {distributed.world_size} ranks" if distributed.enabled else ""
    report(f"experts {manifest_path}: router {experts.manifest.router}, routes {', '.join(experts.experts)}, test-time augmentation "
           f"{experts.tta}; device {device}{ranks}, output {output}")
    clock, served = ModelClock(device), ExpertsServed()
    slices, seconds = 0, 0.0
    for acc, folder in folders.items():
        acc_slices, acc_seconds = reconstruct_folder_with_experts(
            experts, folder, output / f"acc{acc}", device, args.batch_size, args.num_workers,
            not args.no_progress and distributed.is_main, f"acc{acc}", clock, served, distributed.rank, distributed.world_size,
        )
        per_rank = distributed.gather((acc_slices, acc_seconds))
        acc_slices, acc_seconds = sum(n for n, _ in per_rank), max(t for _, t in per_rank)
        report(f"acc{acc}: {acc_slices} slices in {acc_seconds:.1f} s (routing, data loading and writing included)")
        slices, seconds = slices + acc_slices, seconds + acc_seconds
    report(f"load: {load_seconds:.1f} s (manifest, router, {experts.checkpoints_loaded} checkpoints for {len(experts.experts)} routes, device)")
    clock = ModelClock.combined(distributed.gather(clock.state()), device)
    report(format_timing(load_seconds, slices, seconds, clock, args.batch_size, distributed.world_size))
    report(routing_report(experts, served, load_seconds, clock, distributed.world_size))
    _write_timing(output, clock, args.batch_size, device, distributed)
    return 0


if __name__ == "__main__":
    run_cli(main, checks=[require_safe_torch])
