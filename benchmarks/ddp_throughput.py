"""Training throughput with 1 process against N DDP processes (gloo on the CPU, NCCL on GPUs).

    python -m benchmarks.ddp_throughput                     # tiny synthetic data in a temporary folder, CPU
    python -m benchmarks.ddp_throughput --nproc 2 --steps 8 --model demo_varnet

Each configuration is a real ``final_main.py`` run (one epoch of ``--steps`` batches per process, logger
disabled, no validation cost counted): the script times the epoch from the trainer's own log line and prints
samples per second. With N processes every optimizer step sees N samples.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import torch

from utils.errors import run_cli

REPO = Path(__file__).resolve().parents[1]
EPOCH_LINE = re.compile(r"epoch 0 trained: (\d+) samples in ([0-9.]+) s")


def _run(nproc: int, data: Path, result: Path, model: str, threads: int) -> float:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable]
    command = [
        *launcher, "final_main.py", "--config-name=demo", f"data.root={data}", "data.synthetic_preset=null",
        f"result_root={result}", f"exp_name=ddp{nproc}", "logger.mode=disabled", "training.epochs=1",
        "data.num_workers=0", f"model={model}", "training.overwrite=true",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    if run.returncode != 0:
        raise RuntimeError(f"{nproc}-process run failed:\n{run.stderr[-2000:]}")
    match = EPOCH_LINE.search(run.stdout + run.stderr)
    if not match:
        raise RuntimeError("the trainer did not report its epoch time")
    samples, seconds = int(match.group(1)), float(match.group(2))
    print(f"{nproc} process(es): {samples} samples in {seconds:.1f} s of training ({samples / seconds:.2f} samples/s); "
          f"whole run {time.perf_counter() - start:.0f} s")
    return samples / seconds


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--model", default="demo_varnet")
    parser.add_argument("--data", default=None, help="a challenge-layout folder (default: tiny synthetic data)")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(args.data) if args.data else Path(scratch) / "Data"
        if not args.data:
            from utils.data.synthetic.generate import generate

            generate(data, "tiny", seed=0, workers=1)
        print(f"{cores} CPU cores, CUDA devices: {torch.cuda.device_count()}, model {args.model}")
        single = _run(1, data, Path(scratch) / "result", args.model, threads=cores)
        multi = _run(args.nproc, data, Path(scratch) / "result", args.model, threads=max(1, cores // args.nproc))
    print(f"speed-up with {args.nproc} processes: {multi / single:.2f}x")
    return 0


if __name__ == "__main__":
    run_cli(main)
