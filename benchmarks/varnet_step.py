"""E2E-VarNet step time against fastMRI's own ``VarNet``, same weights, same process, interleaved.

    pip install --no-deps fastmri==0.3.0          # benchmark only, not a runtime dependency
    python -m benchmarks.varnet_step               # 4 cascades, 4 coils x 384 x 372, acc4
    python -m benchmarks.varnet_step --cascades 12 --coils 16 --height 640 --width 368 --repeats 3
    python -m benchmarks.varnet_step --compile     # adds torch.compile of ours; compile time reported apart

fastMRI's ``VarNet(num_cascades, sens_chans=8, sens_pools=4, chans=18, pools=4)`` is built with a fixed seed;
its state dict goes through :func:`~utils.model.reference_weights.convert_state_dict` into our ``[0, 0, N]``
``FeatureVarNet`` (``kspace_mult_factor`` 1.0, as the importer sets it). The input is random raw-scale k-space
(~1e-4) under a challenge acc4 mask. Each repeat times fastMRI, then ours (forward without grad, then
forward + backward of a fixed random weighting of the output), so machine noise hits both alike; the lines
report median and min over the repeats, the ratio fastMRI / ours of the medians, and on the same line the
max |ours - fastMRI| / max |fastMRI| of the outputs (fastMRI's ``(B, H, W)`` centre-cropped or padded to our
384 x 384), and of the gradients with respect to the input k-space and to every parameter. The gradients are
ill-conditioned in float32 (per-image normalisations of near-noise inputs): fastMRI's own float32 input gradient
differs from its float64 one by 1.4e-2 of the maximum (1 cascade, 4 x 64 x 60), so gradient differences of
1e-3..1e-2 are rounding, not a different computation; the output is the equality check (<= 1e-5).

``import fastmri.models`` needs only torch, numpy, h5py, PyYAML and scikit-image, all already requirements of
this repository.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Sequence

import torch

from utils.data.masks import equispaced_mask
from utils.errors import ArgumentParser, UserInputError, run_cli
from utils.model.builder import build_model
from utils.model.reference_weights import convert_state_dict
from utils.mri.crop import CHALLENGE_SHAPE, center_crop_or_pad

INSTALL_HINT = "pip install --no-deps fastmri==0.3.0"
OUTPUT_TOLERANCE = 1e-5  # max |ours - fastMRI| / max |fastMRI| of the output: "equal numerics"


def _fastmri_varnet(cascades: int) -> torch.nn.Module:
    """fastMRI's E2E-VarNet as in its leaderboard models (chans 18, sens 8, pools 4), seed 0."""
    try:
        from fastmri.models import VarNet
    except ImportError:
        raise UserInputError(f"benchmarks.varnet_step compares against fastMRI, which is not installed: {INSTALL_HINT}")
    torch.manual_seed(0)
    return VarNet(num_cascades=cascades, sens_chans=8, sens_pools=4, chans=18, pools=4)


def _ours_from(reference: torch.nn.Module) -> torch.nn.Module:
    config, weights = convert_state_dict(reference.state_dict())
    model = build_model(config)
    model.load_state_dict(weights)
    return model


def _inputs(coils: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Masked k-space ``(1, C, H, W, 2)``, bool mask ``(1, 1, 1, W, 1)``, output weights ``(384, 384)``."""
    generator = torch.Generator().manual_seed(0)
    mask = torch.from_numpy(equispaced_mask(width, 4)).view(1, 1, 1, width, 1).bool()
    kspace = 1e-4 * torch.randn(1, coils, height, width, 2, generator=generator) * mask
    return kspace, mask, torch.rand(CHALLENGE_SHAPE, generator=generator)


def _fastmri_image(model: torch.nn.Module, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """fastMRI returns ``(B, H, W)`` uncropped; ours ``(B, 384, 384)`` about the same centre."""
    return center_crop_or_pad(model(kspace, mask), CHALLENGE_SHAPE)


def _relative(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return ((ours - reference).abs().max() / reference.abs().max()).item()


def _timed(step: Callable[[], None]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def _gradients(run: Callable, model: torch.nn.Module, kspace: torch.Tensor, weights: torch.Tensor):
    """Output, input-k-space gradient and parameter gradients (by state-dict name) of ``(run(k) * weights).sum()``."""
    model.zero_grad(set_to_none=True)
    kspace = kspace.clone().requires_grad_(True)
    output = run(kspace)
    (output * weights).sum().backward()
    return output.detach(), kspace.grad, {name: p.grad for name, p in model.named_parameters()}


def equality(fastmri_model, ours, run_ours: Callable, kspace, mask, weights) -> dict[str, float]:
    """max |ours - fastMRI| / max |fastMRI| of the output, the input gradient and all parameter gradients.

    ``run_ours(kspace, mask)`` runs ``ours`` (or a compiled wrapper of it); ``ours`` names the parameters.
    """
    ref_out, ref_input_grad, ref_grads = _gradients(lambda k: _fastmri_image(fastmri_model, k, mask), fastmri_model,
                                                    kspace, weights)
    out, input_grad, grads = _gradients(lambda k: run_ours(k, mask), ours, kspace, weights)
    _, ref_grads = convert_state_dict(ref_grads)  # the importer's renaming (and skip-half swap) is linear
    ref_flat = torch.cat([ref_grads[name].flatten() for name in grads])
    flat = torch.cat([grads[name].flatten() for name in grads])
    return {"output": _relative(out, ref_out), "input_grad": _relative(input_grad, ref_input_grad),
            "param_grads": _relative(flat, ref_flat)}


def _summary(name: str, reference_times: list[float], our_times: list[float]) -> str:
    ref_median, our_median = statistics.median(reference_times), statistics.median(our_times)
    return (f"{name}: fastMRI {ref_median:.3f} s (min {min(reference_times):.3f}), ours {our_median:.3f} s "
            f"(min {min(our_times):.3f}), ratio {ref_median / our_median:.2f}x "
            f"(of mins {min(reference_times) / min(our_times):.2f}x)")


def _compiled(ours: torch.nn.Module, kspace, mask, weights) -> tuple[torch.nn.Module, float]:
    """``torch.compile`` of ours and the seconds its first forward + backward took (compilation)."""
    compiled = torch.compile(ours)
    seconds = _timed(lambda: (compiled(kspace, mask) * weights).sum().backward())
    with torch.no_grad():
        seconds += _timed(lambda: compiled(kspace, mask))
    return compiled, seconds


def parse_args(argv: Sequence[str]):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cascades", type=int, default=4)
    parser.add_argument("--coils", type=int, default=4)
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=372)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timed repetitions (median and min)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of ours (off by default)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    if min(args.cascades, args.coils, args.height, args.width, args.repeats) < 1:
        raise UserInputError("--cascades, --coils, --height, --width and --repeats must all be at least 1.")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    reference = _fastmri_varnet(args.cascades)
    ours = _ours_from(reference)
    kspace, mask, weights = _inputs(args.coils, args.height, args.width)
    print(f"E2E-VarNet, {args.cascades} cascades (chans 18, sens 8, pools 4); input 1 x {args.coils} coils x "
          f"{args.height} x {args.width}, acc4; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{args.repeats} interleaved repeats")
    reference.train(), ours.train()  # both have no dropout or batch norm: train and eval compute the same
    contenders = {"ours": ours}
    if args.compile:
        contenders["ours compiled"], compile_s = _compiled(ours, kspace, mask, weights)
        print(f"torch.compile of ours: first forward + backward and first forward took {compile_s:.1f} s")
    errors = {name: equality(reference, ours, model, kspace, mask, weights) for name, model in contenders.items()}

    def forward(model, run):
        with torch.no_grad():
            run(model)

    def forward_backward(model, run):
        model.zero_grad(set_to_none=True)
        (run(model) * weights).sum().backward()

    run_reference = lambda model: _fastmri_image(model, kspace, mask)  # noqa: E731
    run_ours = lambda model: model(kspace, mask)  # noqa: E731
    times = {(phase, name): [] for phase in ("forward", "forward+backward") for name in ("fastMRI", *contenders)}
    for _ in range(args.repeats):
        for phase, step in (("forward", forward), ("forward+backward", forward_backward)):
            times[phase, "fastMRI"].append(_timed(lambda: step(reference, run_reference)))
            for name, model in contenders.items():
                times[phase, name].append(_timed(lambda: step(model, run_ours)))

    for name, error in errors.items():
        label = "" if name == "ours" else f" [{name}]"
        verdict = "" if error["output"] <= OUTPUT_TOLERANCE else (
            f" -- NOT EQUAL (output tolerance {OUTPUT_TOLERANCE:.0e}): this ratio does not count")
        print(f"{_summary('forward (no grad)' + label, times['forward', 'fastMRI'], times['forward', name])}; "
              f"max diff output {error['output']:.1e}{verdict}")
        print(f"{_summary('forward+backward' + label, times['forward+backward', 'fastMRI'], times['forward+backward', name])}; "
              f"max diff output {error['output']:.1e}, input grad {error['input_grad']:.1e}, "
              f"param grads {error['param_grads']:.1e}{verdict}")
    return 0


if __name__ == "__main__":
    run_cli(main)
