"""Reconstruct every volume of a folder with a trained model: leaderboard k-space or validation data.

The forward pass is :func:`run_model` (shared with validation). Batches never cross a volume, and a volume is
written as soon as its last slice is done.

Time is reported two ways. :class:`ReconstructionTiming` is wall-clock time, data loading and writing included.
:class:`ModelClock` is the 2026 harness convention: pure model time per slice, the device synchronised around
each forward pass, after ``warmup_slices`` untimed slices (5 in the harness; they let cuDNN choose its kernels
and the allocator grow). Everything a model does for a slice happens inside its one call and is timed: both
passes of flip test-time augmentation (:mod:`utils.inference.tta`), every member of an ensemble
(:mod:`utils.inference.ensemble`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from utils.data.dataset import SliceDataset
from utils.data.sampler import volume_batches
from utils.data.transforms import Sample
from utils.inference.ensemble import model_inputs
from utils.inference.writer import ReconstructionWriter

__all__ = [
    "HARNESS_WARMUP_SLICES",
    "LEADERBOARD_SLICES",
    "TIME_BUDGET_S",
    "ModelClock",
    "ReconstructionTiming",
    "format_timing",
    "reconstruct_dataset",
    "run_model",
]

HARNESS_WARMUP_SLICES = 5
TIME_BUDGET_S = 3600.0
LEADERBOARD_SLICES = 1809  # acc4 520 brain + 388 knee, acc8 520 brain + 381 knee (SPEC §1)


def run_model(model: nn.Module, batch: Sample, device: torch.device) -> torch.Tensor:
    """The model's (B, 384, 384) float32 output for a collated batch (an ensemble's batch may hold several inputs)."""
    masked_kspace = model_inputs(batch.masked_kspace, device, non_blocking=True)
    mask = batch.mask.to(device, non_blocking=True)
    return model(masked_kspace, mask)


@dataclass
class ReconstructionTiming:
    """Slices reconstructed and wall-clock seconds, including data loading and writing."""

    slices: int
    seconds: float

    @property
    def ms_per_slice(self) -> float:
        return 1000.0 * self.seconds / max(self.slices, 1)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class ModelClock:
    """Pure model seconds per slice, after ``warmup_slices`` untimed slices (whole batches: with batch size
    ``b`` the first ``ceil(warmup_slices / b)`` batches are untimed). One clock serves several folders, so the
    warm-up happens once, as in the harness."""

    def __init__(self, device: torch.device, warmup_slices: int = HARNESS_WARMUP_SLICES):
        self.device = device
        self.warmup_slices = warmup_slices
        self.untimed_slices = 0
        self.slices = 0
        self.seconds = 0.0

    def run(self, model: nn.Module, batch: Sample) -> torch.Tensor:
        """``run_model(model, batch, device)``, timed unless it is still warming up."""
        batch_slices = len(batch.fname)
        if self.untimed_slices < self.warmup_slices:
            self.untimed_slices += batch_slices
            return run_model(model, batch, self.device)
        masked_kspace = model_inputs(batch.masked_kspace, self.device)  # the copy to the device is not model time
        mask = batch.mask.to(self.device)
        _synchronize(self.device)
        start = time.perf_counter()
        output = model(masked_kspace, mask)
        _synchronize(self.device)
        self.seconds += time.perf_counter() - start
        self.slices += batch_slices
        return output

    def state(self) -> tuple[int, int, float]:
        """(untimed slices, timed slices, seconds): plain data to gather from other ranks."""
        return self.untimed_slices, self.slices, self.seconds

    @classmethod
    def combined(cls, states: list[tuple[int, int, float]], device: torch.device) -> "ModelClock":
        """One clock holding the sums of several ranks' :meth:`state`."""
        clock = cls(device)
        clock.untimed_slices = sum(state[0] for state in states)
        clock.slices = sum(state[1] for state in states)
        clock.seconds = sum(state[2] for state in states)
        return clock

    @property
    def ms_per_slice(self) -> float:
        """Mean model milliseconds per timed slice (NaN before any slice was timed)."""
        return 1000.0 * self.seconds / self.slices if self.slices else float("nan")


def volume_loader(
    dataset: SliceDataset, batch_size: int, num_workers: int = 0, pin_memory: bool = False, rank: int = 0, world_size: int = 1
) -> DataLoader:
    """In-order loader whose batches stay inside one volume; with ``world_size`` > 1, only the volumes
    ``rank, rank + world_size, ...`` (sharded validation or reconstruction)."""
    volumes = dataset.example_volumes()
    batches = [batch for batch in volume_batches(volumes, batch_size) if volumes[batch[0]] % world_size == rank]
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=num_workers,
        pin_memory=pin_memory,
    )


@torch.inference_mode()
def reconstruct_dataset(
    model: nn.Module,
    dataset: SliceDataset,
    out_dir: str | Path,
    device: torch.device,
    batch_size: int = 1,
    num_workers: int = 0,
    progress: bool = True,
    description: str = "reconstructing",
    clock: ModelClock | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> ReconstructionTiming:
    """Write ``out_dir/<fname>`` ('reconstruction', (S, 384, 384) float32) for every volume of ``dataset``;
    ``clock`` (if given) also collects the pure model time. With ``world_size`` > 1 this rank reconstructs and
    writes only the volumes ``rank, rank + world_size, ...``: every file has exactly one writer."""
    model.eval()
    clock = clock or ModelClock(device)
    writer = ReconstructionWriter(out_dir, {v.kspace_path.name: v.kspace.num_slices for v in dataset.volumes})
    loader = volume_loader(dataset, batch_size, num_workers, device.type == "cuda", rank, world_size)
    slices = sum(len(batch) for batch in loader.batch_sampler)
    start = time.perf_counter()
    with tqdm(total=slices, desc=description, unit="slice", disable=not progress) as bar:
        for batch in loader:
            output = clock.run(model, batch).float().cpu().numpy()
            for image, fname, slice_idx in zip(output, batch.fname, batch.slice_idx.tolist()):
                writer.add(fname, slice_idx, image)
            bar.update(len(output))
    writer.close()
    return ReconstructionTiming(slices, time.perf_counter() - start)


def format_timing(
    load_seconds: float, slices: int, seconds: float, clock: ModelClock, batch_size: int, ranks: int = 1
) -> str:
    """The time report: wall clock as measured and projected to the official leaderboard, and the 2026 convention.

    With ``ranks`` > 1 (torchrun), ``load_seconds`` and ``seconds`` are the slowest rank's, ``slices`` and the
    clock the sum over ranks, and the projections divide the model time among the ranks.
    """
    total = load_seconds + seconds
    wall_per_slice = seconds / max(slices, 1)  # wall time of the job per slice reconstructed by any rank
    on_ranks = f" on {ranks} ranks" if ranks > 1 else ""
    lines = [f"total: {slices} slices{on_ranks} in {total:.1f} s including the load ({1000 * wall_per_slice:.1f} "
             f"ms/slice); within the {TIME_BUDGET_S:.0f} s budget: {'yes' if total <= TIME_BUDGET_S else 'NO'}"]
    if slices != LEADERBOARD_SLICES:
        projected = load_seconds + wall_per_slice * LEADERBOARD_SLICES
        lines.append(f"at this rate the official {LEADERBOARD_SLICES:,}-slice leaderboard would take {projected:.0f} s")
    if clock.slices:
        projected = load_seconds + clock.seconds / clock.slices * LEADERBOARD_SLICES / ranks
        lines.append(
            f"model: {clock.ms_per_slice:.1f} ms/slice over {clock.slices} slices after {clock.untimed_slices} untimed "
            f"warm-up slices (2026 harness convention, batch {batch_size}{on_ranks}); projected for "
            f"{LEADERBOARD_SLICES:,} slices: {projected:.0f} s with the load"
        )
    else:
        lines.append(f"model: no slice timed (the first {HARNESS_WARMUP_SLICES} slices are the untimed warm-up)")
    return "\n".join(lines)
