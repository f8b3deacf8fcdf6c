"""Time and memory of one model step: forward (inference) and forward + backward (training).

    python -m benchmarks.model_step --model dlka_varnet                    # brain size 16 x 768 x 396, batch 1
    python -m benchmarks.model_step --model baby_varnet --height 640 --width 320 --checkpointing off
    python -m benchmarks.model_step --model dlka_varnet unet_chans=12      # config overrides as key=value
    python -m benchmarks.model_step --checkpointing on sens_coil_chunk=0   # the sensitivity U-Net unchunked
    python -m benchmarks.model_step --model promptmr_plus_8gb --checkpointing on   # PromptMR+, the 2025 winner's

Any ``configs/model/<name>.yaml`` works: the model is built by the one builder, whatever its ``_target_``.

A training step is forward, backward and an optimizer step (``--optimizer``, Adam by default: its two state
tensors per parameter are part of the peak). One untimed step comes first, so the timed steps, and the peak,
run with the optimizer state allocated, as every step of a real run after the first does.

Each checkpointing mode runs in a fresh process so that its peak memory is its own: the process peak RSS
(``resource.getrusage``) on CPU, ``torch.cuda.max_memory_allocated`` on CUDA. On CPU the step's activation
memory is estimated as peak RSS minus the RSS after building the model and its inputs.
"""
from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from typing import Sequence

import torch

from utils.data.masks import equispaced_mask
from utils.errors import UserInputError, run_cli
from utils.model.builder import build_model, load_model_config
from utils.model.count_params import count_parameters

MIB = 2**20
OPTIMIZERS = {"adam": torch.optim.Adam, "nadam": torch.optim.NAdam}


def _rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _inputs(args: argparse.Namespace, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Random raw-scale k-space (B, C, H, W, 2) under a challenge acc4 mask (spacing 4 plus an 8% centre block)."""
    generator = torch.Generator().manual_seed(0)
    mask = torch.from_numpy(equispaced_mask(args.width, 4))
    mask = mask.view(1, 1, 1, args.width, 1).expand(args.batch, 1, 1, args.width, 1).contiguous()
    kspace = 1e-4 * torch.randn(args.batch, args.coils, args.height, args.width, 2, generator=generator)
    return (kspace * mask).to(device), mask.to(device)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(args: argparse.Namespace, checkpointing: bool) -> dict[str, float]:
    """One process, one checkpointing mode: best-of-``repeats`` times and the step's peak memory."""
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_model(load_model_config(args.model, [*args.overrides, f"checkpointing={str(checkpointing).lower()}"]))
    model.to(device)
    kspace, mask = _inputs(args, device)
    result = {"parameters": count_parameters(model), "rss_before_mib": _rss_peak_mib()}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        result["allocated_before_mib"] = torch.cuda.memory_allocated(device) / MIB

    model.eval()
    forward_times = []
    with torch.no_grad():
        for _ in range(args.repeats):
            start = time.perf_counter()
            model(kspace, mask)
            _synchronize(device)
            forward_times.append(time.perf_counter() - start)
    result["forward_s"] = min(forward_times)
    result["rss_after_forward_mib"] = _rss_peak_mib()

    model.train()
    optimizer = OPTIMIZERS[args.optimizer](model.parameters(), lr=1e-6) if args.optimizer != "none" else None

    def train_step() -> float:
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        model(kspace, mask).mean().backward()
        if optimizer is not None:
            optimizer.step()
        _synchronize(device)
        return time.perf_counter() - start

    if optimizer is not None:
        train_step()  # allocates the optimizer state
    result["forward_backward_s"] = min(train_step() for _ in range(args.repeats))
    result["rss_peak_mib"] = _rss_peak_mib()
    if device.type == "cuda":
        result["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated(device) / MIB
    return result


def _child(args: argparse.Namespace, checkpointing: bool, queue) -> None:
    queue.put(measure(args, checkpointing))


def _in_fresh_process(args: argparse.Namespace, checkpointing: bool) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(args, checkpointing, queue))
    process.start()
    try:
        result = queue.get(timeout=24 * 3600)  # read before join: a child blocks until its queue is drained
    except Exception:
        process.join()
        raise RuntimeError(f"the checkpointing={checkpointing} run failed with exit code {process.exitcode}") from None
    process.join()
    return result


def _report(args: argparse.Namespace, checkpointing: bool, result: dict[str, float]) -> None:
    print(f"checkpointing {'on ' if checkpointing else 'off'}: "
          f"forward {result['forward_s']:.2f} s, training step {result['forward_backward_s']:.2f} s "
          f"(forward, backward, {args.optimizer} step)")
    if "cuda_peak_allocated_mib" in result:
        print(f"  CUDA peak allocated {result['cuda_peak_allocated_mib']:.0f} MiB "
              f"(model and inputs {result['allocated_before_mib']:.0f} MiB)")
    else:
        step = result["rss_peak_mib"] - result["rss_before_mib"]
        print(f"  peak RSS {result['rss_peak_mib']:.0f} MiB; after building model and inputs "
              f"{result['rss_before_mib']:.0f} MiB; the training step adds {step:.0f} MiB "
              f"(inference forward adds {result['rss_after_forward_mib'] - result['rss_before_mib']:.0f} MiB)")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="dlka_varnet", help="configs/model/<name>.yaml or a YAML path")
    parser.add_argument("overrides", nargs="*", help="model config overrides, key=value")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--coils", type=int, default=16)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=396)
    parser.add_argument("--checkpointing", choices=("on", "off", "both"), default="both")
    parser.add_argument("--optimizer", choices=("adam", "nadam", "none"), default="adam",
                        help="optimizer stepped in the training step (none: forward and backward only)")
    parser.add_argument("--repeats", type=int, default=1, help="timed repetitions; the best is reported")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    if min(args.batch, args.coils, args.height, args.width, args.repeats) < 1:
        raise UserInputError("--batch, --coils, --height, --width and --repeats must all be at least 1.")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    load_model_config(args.model, args.overrides)  # fail here, not in a child process
    modes = {"on": [True], "off": [False], "both": [False, True]}[args.checkpointing]
    print(f"model {args.model} {' '.join(args.overrides)}; input {args.batch} x {args.coils} coils x "
          f"{args.height} x {args.width}; device {args.device}, torch threads "
          f"{args.threads or torch.get_num_threads()}")
    for checkpointing in modes:
        _report(args, checkpointing, _in_fresh_process(args, checkpointing))
    return 0


if __name__ == "__main__":
    run_cli(main)
