"""E2E-VarNet inference at batch 1 against fastMRI's own ``VarNet``, same weights, in the 2026 harness convention.

    pip install --no-deps fastmri==0.3.0                  # benchmark only, not a runtime dependency
    python -m benchmarks.varnet_inference                  # knee and brain, 1 thread and torch's default
    python -m benchmarks.varnet_inference --sizes knee --threads 1 --timed 5
    python -m benchmarks.varnet_inference --device cuda    # on a GPU: synchronised around every slice

Ours is the shipped ``configs/model/varnet.yaml`` (12 image cascades, chans 18, pools 4, sens chans 8,
``kspace_mult_factor`` 1e6, ``sens_coil_chunk`` 4) holding the weights of a seeded fastMRI
``VarNet(num_cascades=12, sens_chans=8, sens_pools=4, chans=18, pools=4)`` through
:func:`~utils.model.reference_weights.convert_state_dict`. Both run in eval mode under ``torch.inference_mode()``,
one slice at a time, as the harness calls a model: 5 untimed warm-up slices, then ``--timed`` slices, each
input copied to the device before its clock starts, the device synchronised before and after each forward.
Each slice is timed on fastMRI and then on ours (A B A B ...), so machine noise hits both alike; the printed
ratio is the median of the per-slice ratios fastMRI / ours, with their min-max. On the CPU the same calls are
also reported in process CPU time (user + system, all threads), which a machine shared with other work
disturbs far less than the wall clock. Slices are synthetic knee or
brain k-space from the repository's simulator (:mod:`utils.data.synthetic`, seed 0, one volume per size) under a
challenge acc4 mask; fastMRI is given the mask as bool (its ``torch.where`` needs it), ours as the float32
``(1, 1, 1, W, 1)`` the data loader collates.

The weights are fastMRI's seeded initialisation with the last 1x1 convolution of every cascade's U-Net scaled by
``--refinement-scale`` (0.1). A seeded U-Net's output is as large as its input, so twelve such cascades compound
float32 rounding until fastMRI's own float32 output is 1.0e-05 from its float64 one (knee, first slice) and any
implementation that does not repeat its operations one for one differs from it by about that much (ours: 1.8e-05,
while 5.5e-13 in float64). A trained cascade adds a small refinement; at scale 0.1 fastMRI's float32 rounding is
7.8e-07 and ours differs from fastMRI by 7.4e-07. The scale changes no operation and no time.

The output check is max |ours - fastMRI| / max |fastMRI| over the timed slices, fastMRI's ``(1, H, W)``
centre-cropped or padded to our 384 x 384 outside its clock (the crop is part of our model, so of our time).
Above ``OUTPUT_TOLERANCE`` (1e-5) the line says "NOT EQUAL ... this ratio does not count". Twelve cascades of
randomly initialised U-Nets amplify float32 rounding: fastMRI's own output moves by about 5e-6 between 1 and 2
threads (at scale 1). ``--float64`` therefore also runs both models in float64 on the first slice (untimed) and prints how far
ours is from fastMRI there (the same computation: ~1e-12) and how far fastMRI's own float32 output is from its
float64 one (the float32 rounding floor the 1e-5 check sits on).
"""
from __future__ import annotations

import copy
import dataclasses
import os
import statistics
import time
from typing import Iterator, Sequence

import numpy as np
import torch

from benchmarks.varnet_step import OUTPUT_TOLERANCE, _fastmri_varnet, _relative
from utils.data.masks import equispaced_mask
from utils.data.synthetic.presets import get_preset
from utils.data.synthetic.simulate import draw_recipe, simulate_volume
from utils.errors import ArgumentParser, UserInputError, run_cli
from utils.inference.reconstruct import HARNESS_WARMUP_SLICES
from utils.model.builder import build_model, load_model_config
from utils.model.reference_weights import convert_state_dict
from utils.mri.crop import CHALLENGE_SHAPE, center_crop_or_pad

CASCADES = 12
SIZES = {"knee": (15, 640, 368), "brain": (16, 768, 396)}  # coils x height x width; the 2026 data are knee
REFINEMENT_SCALE = 0.1  # see the module docstring: trained cascades refine; seeded ones compound float32 rounding
ARCHITECTURE_KEYS = ("cascade_counts", "sens_chans", "sens_pools", "image_chans", "image_pools")


def models(device: torch.device, refinement_scale: float = REFINEMENT_SCALE) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(fastMRI's VarNet, ours from ``configs/model/varnet.yaml`` with its weights), eval mode, on ``device``.

    The final 1x1 convolution of every cascade's U-Net is scaled by ``refinement_scale`` in fastMRI's model
    before its weights are converted, so both models hold the same weights."""
    reference = _fastmri_varnet(CASCADES)
    with torch.no_grad():
        for cascade in reference.cascades:
            last = cascade.model.unet.up_conv[-1][-1]
            last.weight.mul_(refinement_scale)
            last.bias.mul_(refinement_scale)
    config = load_model_config("varnet")
    converted, weights = convert_state_dict(reference.state_dict())
    shipped = {key: config[key] for key in ARCHITECTURE_KEYS}
    shipped["cascade_counts"] = list(shipped["cascade_counts"])
    differing = [key for key in ARCHITECTURE_KEYS if converted[key] != shipped[key]]
    if differing:
        raise UserInputError(f"configs/model/varnet.yaml no longer matches fastMRI's VarNet in {differing}.")
    ours = build_model(config)
    ours.load_state_dict(weights)
    return reference.eval().to(device), ours.eval().to(device)


def volume_slices(anatomy: str, count: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` slices of one synthetic ``anatomy`` volume: masked k-space ``(1, C, H, W, 2)`` and the float32
    acc4 mask ``(1, 1, 1, W, 1)``, on the CPU, drawn lazily (the repository's simulator, seed 0)."""
    coils, height, width = SIZES[anatomy]
    rng = np.random.default_rng(0)
    recipe = draw_recipe(rng, get_preset("full"), anatomy, 4, leaderboard=True)
    recipe = dataclasses.replace(recipe, num_coils=coils, height=height, width=width, num_slices=count)
    mask = torch.from_numpy(equispaced_mask(width, 4)).view(1, 1, 1, width, 1).float()
    _, slices = simulate_volume(rng, recipe, lesions=False)
    for kspace in slices:
        yield torch.view_as_real(torch.from_numpy(kspace))[None] * mask, mask


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_call(model: torch.nn.Module, kspace: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """``model(kspace, mask)``, its wall-clock seconds (the device synchronised before and after, as the harness
    does) and the CPU seconds of this process meanwhile (all threads, user and system)."""
    _synchronize(kspace.device)
    start, start_cpu = time.perf_counter(), time.process_time()
    output = model(kspace, mask)
    _synchronize(kspace.device)
    return output, time.perf_counter() - start, time.process_time() - start_cpu


@torch.inference_mode()
def compare(reference, ours, anatomy: str, warmup: int, timed: int, device: torch.device):
    """Per-slice ``{"wall": [...], "cpu": [...]}`` seconds of fastMRI and of ours (timed slices only) and the
    largest relative output difference."""
    reference_times, our_times, difference = {"wall": [], "cpu": []}, {"wall": [], "cpu": []}, 0.0
    for index, inputs in enumerate(volume_slices(anatomy, warmup + timed)):
        kspace, mask = (tensor.to(device) for tensor in inputs)
        reference_out, *reference_s = timed_call(reference, kspace, mask.bool())
        our_out, *our_s = timed_call(ours, kspace, mask)
        if index >= warmup:
            for times, (wall, cpu) in ((reference_times, reference_s), (our_times, our_s)):
                times["wall"].append(wall)
                times["cpu"].append(cpu)
            difference = max(difference, _relative(our_out, center_crop_or_pad(reference_out, CHALLENGE_SHAPE)))
    return reference_times, our_times, difference


@torch.inference_mode()
def float64_check(reference, ours, anatomy: str, device: torch.device) -> str:
    """One line: ours against fastMRI in float64, and each float32 output against fastMRI in float64."""
    kspace, mask = (tensor.to(device) for tensor in next(volume_slices(anatomy, 1)))
    crop = lambda image: center_crop_or_pad(image, CHALLENGE_SHAPE)  # noqa: E731
    reference64 = crop(copy.deepcopy(reference).double()(kspace.double(), mask.bool()))
    ours64 = copy.deepcopy(ours).double()(kspace.double(), mask.double())
    reference32, ours32 = crop(reference(kspace, mask.bool())), ours(kspace, mask)
    return (f"{anatomy} float64 check (first slice): ours64 vs fastMRI64 {_relative(ours64, reference64):.1e}; "
            f"fastMRI32 vs fastMRI64 {_relative(reference32, reference64):.1e} (float32 rounding); ours32 vs "
            f"fastMRI64 {_relative(ours32, reference64):.1e}; ours32 vs fastMRI32 {_relative(ours32, reference32):.1e}")


def _times(reference_times: list[float], our_times: list[float]) -> str:
    ratios = [reference_s / our_s for reference_s, our_s in zip(reference_times, our_times)]
    return (f"fastMRI {1000 * statistics.median(reference_times):.0f} ms/slice "
            f"({1000 * min(reference_times):.0f}-{1000 * max(reference_times):.0f}), ours "
            f"{1000 * statistics.median(our_times):.0f} ms/slice ({1000 * min(our_times):.0f}-"
            f"{1000 * max(our_times):.0f}); ratio {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")


def summary(name: str, reference_times: dict, our_times: dict, difference: float, device: torch.device) -> str:
    """The wall-clock line (the harness's measure) and, on the CPU, the process CPU time of the same calls: on a
    machine shared with other work it depends far less on how much of a core each call was given."""
    verdict = "" if difference <= OUTPUT_TOLERANCE else (
        f" -- NOT EQUAL (output tolerance {OUTPUT_TOLERANCE:.0e}): this ratio does not count")
    load = " / ".join(f"{value:.1f}" for value in os.getloadavg())
    line = (f"{name}, {len(our_times['wall'])} slices, load average {load} at the end: wall "
            f"{_times(reference_times['wall'], our_times['wall'])}; max diff output {difference:.1e}{verdict}")
    if device.type == "cpu":
        line += f"\n    CPU time: {_times(reference_times['cpu'], our_times['cpu'])}"
    return line


def parse_args(argv: Sequence[str]):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=list(SIZES))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 0],
                        help="torch CPU thread counts to run, one after the other (0: torch's default)")
    parser.add_argument("--warmup", type=int, default=HARNESS_WARMUP_SLICES, help="untimed slices first (harness: 5)")
    parser.add_argument("--timed", type=int, default=5, help="timed slices per size and thread count")
    parser.add_argument("--float64", action="store_true",
                        help="also compare both models in float64 on the first slice of each size (untimed)")
    parser.add_argument("--refinement-scale", type=float, default=REFINEMENT_SCALE,
                        help="factor of the last convolution of every cascade U-Net, in both models (1: fastMRI's seeded weights)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    if args.warmup < 0 or args.timed < 1 or min(args.threads) < 0:
        raise UserInputError("--warmup and --threads must be >= 0 and --timed >= 1.")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    default_threads = torch.get_num_threads()
    reference, ours = models(device, args.refinement_scale)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"E2E-VarNet inference, batch 1, {CASCADES} cascades (chans 18, sens 8, pools 4), eval, inference_mode; "
          f"{where}, torch {torch.__version__}; refinement scale {args.refinement_scale:g}; {args.warmup} warm-up + {args.timed} timed slices, fastMRI and ours "
          f"interleaved; acc4; load average {' / '.join(f'{value:.1f}' for value in os.getloadavg())}")
    for threads in args.threads:
        torch.set_num_threads(threads or default_threads)
        for name in args.sizes:
            coils, height, width = SIZES[name]
            times = compare(reference, ours, name, args.warmup, args.timed, device)
            label = f"{name} {coils} x {height} x {width}, {torch.get_num_threads()} thread(s)"
            print(summary(label, *times, device), flush=True)
            if args.float64 and threads == args.threads[0]:
                print(float64_check(reference, ours, name, device), flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
