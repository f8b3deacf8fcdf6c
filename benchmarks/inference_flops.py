"""FLOPs per slice of a model at brain and knee size, and a projected leaderboard time on a GTX 1080.

    python -m benchmarks.inference_flops                         # dlka_varnet, brain 16 x 768 x 396, knee 15 x 640 x 372
    python -m benchmarks.inference_flops --efficiency 0.5 --time # another efficiency; also time a CPU forward
    python -m benchmarks.inference_flops --model varnet

FLOPs of one inference forward pass (batch 1) are counted by ``torch.utils.flop_counter.FlopCounterMode``:
convolutions and matrix products (2 FLOPs per multiply-add), plus the FFTs at ``5 N log2 N`` per complex
transform of N points, which the counter does not know by itself. Element-wise work (normalisation,
activations, data consistency) is not counted: it is memory-bound and small next to the convolutions.

The GTX 1080 figure is a **projection**, not a measurement: FLOPs / (8.9 TFLOP/s fp32 peak x efficiency).
The default efficiency, 0.35, is an assumption for cuDNN's fp32 convolutions at the 2 to 384 channels of
these U-Nets; change it with ``--efficiency``. The leaderboard total uses the official slice counts
(1,040 brain and 769 knee slices: acc4 520 + 388, acc8 520 + 381, SPEC §1). ``--time`` also times the CPU
forward pass of each size here, as a check of the counted FLOPs against a measured rate.
"""
from __future__ import annotations

import argparse
import math
import time
from typing import Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from utils.data.masks import equispaced_mask
from utils.errors import UserInputError, run_cli
from utils.inference.reconstruct import HARNESS_WARMUP_SLICES
from utils.model.builder import build_model, load_model_config

GTX1080_FP32_FLOPS = 8.9e12
SIZES = {"brain": (16, 768, 396), "knee": (15, 640, 372)}
LEADERBOARD_SLICES = {"brain": 520 + 520, "knee": 388 + 381}


def _fft_flops(x_shape, dim) -> int:
    """``5 N log2 N`` per complex transform over ``dim`` (N points), times the number of transforms."""
    points = math.prod(x_shape[d] for d in dim)
    return int(5 * math.prod(x_shape) * math.log2(points)) if points > 1 else 0


def _c2c_flops(x_shape, dim, *args, out_shape=None, **kwargs) -> int:
    return _fft_flops(x_shape, dim)


# keyed by operator packet, as the counter's own registry is; the counter decomposes fft_fftn/fft_ifftn into it
FFT_OPS = {torch.ops.aten._fft_c2c: _c2c_flops}


def count_flops(model: torch.nn.Module, coils: int, height: int, width: int) -> tuple[int, int, float]:
    """(all counted FLOPs, of which FFT FLOPs, seconds) of one inference forward at (1, coils, height, width)."""
    mask = torch.from_numpy(equispaced_mask(width, 4)).view(1, 1, 1, width, 1)
    kspace = 1e-4 * torch.randn(1, coils, height, width, 2, generator=torch.Generator().manual_seed(0)) * mask
    counter = FlopCounterMode(display=False, custom_mapping=FFT_OPS)
    start = time.perf_counter()
    with torch.inference_mode(), counter:
        model(kspace, mask)
    seconds = time.perf_counter() - start
    fft = sum(count for op, count in counter.get_flop_counts()["Global"].items() if op in FFT_OPS)
    return counter.get_total_flops(), fft, seconds


def timed_forward(model: torch.nn.Module, coils: int, height: int, width: int, warmup: int, timed: int) -> float:
    """Mean seconds of ``timed`` inference forwards at batch 1 after ``warmup`` untimed ones (the 2026 harness
    convention is 5)."""
    mask = torch.from_numpy(equispaced_mask(width, 4)).view(1, 1, 1, width, 1)
    kspace = 1e-4 * torch.randn(1, coils, height, width, 2) * mask
    with torch.inference_mode():
        for _ in range(warmup):
            model(kspace, mask)
        start = time.perf_counter()
        for _ in range(timed):
            model(kspace, mask)
    return (time.perf_counter() - start) / timed


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="dlka_varnet", help="configs/model/<name>.yaml or a YAML path")
    parser.add_argument("overrides", nargs="*", help="model config overrides, key=value")
    parser.add_argument("--efficiency", type=float, default=0.35, help="assumed fraction of the GTX 1080's fp32 peak")
    parser.add_argument("--time", action="store_true", help="also time CPU forwards per size on this machine")
    parser.add_argument("--warmup", type=int, default=HARNESS_WARMUP_SLICES, help="untimed forwards before timing")
    parser.add_argument("--timed", type=int, default=3, help="timed forwards per size")
    args = parser.parse_args(argv)
    if args.warmup < 0 or args.timed < 1:
        raise UserInputError(f"--warmup must be >= 0 and --timed >= 1, got {args.warmup} and {args.timed}.")
    if not 0 < args.efficiency <= 1:
        raise UserInputError(f"--efficiency must be in (0, 1], got {args.efficiency}.")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    torch.manual_seed(0)
    model = build_model(load_model_config(args.model, args.overrides)).eval()
    rate = GTX1080_FP32_FLOPS * args.efficiency
    print(f"model {args.model} {' '.join(args.overrides)}; GTX 1080 projection at {args.efficiency:.0%} of "
          f"{GTX1080_FP32_FLOPS / 1e12:.1f} TFLOP/s fp32 (a projection, not a measurement)")
    total_seconds = 0.0
    for anatomy, (coils, height, width) in SIZES.items():
        flops, fft, counted_seconds = count_flops(model, coils, height, width)
        projected = flops / rate
        total_seconds += projected * LEADERBOARD_SLICES[anatomy]
        line = (f"{anatomy} {coils} x {height} x {width}: {flops / 1e9:.0f} GFLOP/slice "
                f"(FFT {fft / 1e9:.1f}); projected GTX 1080 {1000 * projected:.0f} ms/slice")
        if args.time:
            seconds = timed_forward(model, coils, height, width, args.warmup, args.timed)
            line += (f"; this CPU ({torch.get_num_threads()} threads): {1000 * seconds:.0f} ms/slice measured after "
                     f"{args.warmup} warm-up slices, {flops / seconds / 1e9:.0f} GFLOP/s")
        print(line)
    print(f"projected GTX 1080 model time for the official 1,809 slices "
          f"({LEADERBOARD_SLICES['brain']} brain, {LEADERBOARD_SLICES['knee']} knee): {total_seconds:.0f} s "
          f"of the 3,600 s budget (data loading and the model load not included)")
    return 0


if __name__ == "__main__":
    run_cli(main)
