"""What coil compression saves: compression time per slice, and the model step at C coils against N virtual coils.

    python -m benchmarks.coil_compression                               # dlka_varnet, 16 -> 8 coils, brain size
    python -m benchmarks.coil_compression --height 384 --width 198      # a quarter of the area (CPU-friendly)
    python -m benchmarks.coil_compression --coils 20 --virtual 10 --checkpointing off

Each model measurement runs in a fresh process (see ``benchmarks.model_step``) so its peak memory is its own.
Only the coil-dependent parts of the network shrink: the sensitivity model runs once per coil, and the FFTs and
SENSE operators scale with the coil count; the feature and image U-Nets act on one coil-combined image.
"""
from __future__ import annotations

import argparse
import time
from typing import Sequence

import numpy as np
import torch

from benchmarks.model_step import _in_fresh_process
from utils.data.compression import CoilCompressor
from utils.data.masks import equispaced_mask
from utils.errors import UserInputError, run_cli
from utils.model.builder import load_model_config


def compression_seconds(method: str, coils: int, virtual: int, height: int, width: int, repeats: int = 3) -> float:
    rng = np.random.default_rng(0)
    kspace = (rng.standard_normal((coils, height, width)) + 1j * rng.standard_normal((coils, height, width))).astype(np.complex64)
    mask = equispaced_mask(width, 4)
    compressor = CoilCompressor(method, num_coils=virtual)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        compressor(kspace * mask, mask)
        times.append(time.perf_counter() - start)
    return min(times)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="dlka_varnet")
    parser.add_argument("overrides", nargs="*", help="model config overrides, key=value")
    parser.add_argument("--coils", type=int, default=16)
    parser.add_argument("--virtual", type=int, default=8, help="virtual coils after compression")
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=396)
    parser.add_argument("--checkpointing", choices=("on", "off"), default="on", help="as in the training recipe")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    if not 1 <= args.virtual < args.coils:
        raise UserInputError(f"--virtual must be between 1 and --coils - 1, got {args.virtual} for {args.coils} coils.")
    args.batch = 1
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    load_model_config(args.model, args.overrides)
    print(f"model {args.model}; {args.coils} -> {args.virtual} coils; {args.height} x {args.width}; device {args.device}; "
          f"checkpointing {args.checkpointing}; torch threads {args.threads or torch.get_num_threads()}")
    for method in ("scc", "gcc"):
        seconds = compression_seconds(method, args.coils, args.virtual, args.height, args.width)
        print(f"{method.upper()} compression of one slice (numpy, in the data loader): {1000 * seconds:.0f} ms")
    results = {}
    for coils in (args.coils, args.virtual):
        run = argparse.Namespace(**{**vars(args), "coils": coils})
        results[coils] = result = _in_fresh_process(run, args.checkpointing == "on")
        memory = (f"CUDA peak allocated {result['cuda_peak_allocated_mib']:.0f} MiB" if "cuda_peak_allocated_mib" in result
                  else f"step adds {result['rss_peak_mib'] - result['rss_before_mib']:.0f} MiB RSS")
        print(f"{coils:3d} coils: forward {result['forward_s']:.2f} s, forward+backward {result['forward_backward_s']:.2f} s, {memory}")
    full, small = results[args.coils], results[args.virtual]
    print(f"saved by compression: forward {100 * (1 - small['forward_s'] / full['forward_s']):.0f} %, "
          f"forward+backward {100 * (1 - small['forward_backward_s'] / full['forward_backward_s']):.0f} %")
    return 0


if __name__ == "__main__":
    run_cli(main)
