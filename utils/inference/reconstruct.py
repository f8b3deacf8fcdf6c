"""Reconstruct every volume of a folder with a trained model: leaderboard k-space or validation data.

The forward pass is :func:`run_model` (shared with validation). Batches never cross a volume, and a volume is
written as soon as its last slice is done.
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
from utils.inference.writer import ReconstructionWriter

__all__ = ["run_model", "ReconstructionTiming", "reconstruct_dataset"]


def run_model(model: nn.Module, batch: Sample, device: torch.device) -> torch.Tensor:
    """The model's (B, 384, 384) float32 output for a collated batch."""
    masked_kspace = batch.masked_kspace.to(device, non_blocking=True)
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


@torch.no_grad()
def reconstruct_dataset(
    model: nn.Module,
    dataset: SliceDataset,
    out_dir: str | Path,
    device: torch.device,
    batch_size: int = 1,
    num_workers: int = 0,
    progress: bool = True,
    description: str = "reconstructing",
) -> ReconstructionTiming:
    """Write ``out_dir/<fname>`` ('reconstruction', (S, 384, 384) float32) for every volume of ``dataset``."""
    model.eval()
    writer = ReconstructionWriter(out_dir, {v.kspace_path.name: v.kspace.num_slices for v in dataset.volumes})
    loader = volume_loader(dataset, batch_size, num_workers, pin_memory=device.type == "cuda")
    start = time.perf_counter()
    with tqdm(total=len(dataset), desc=description, unit="slice", disable=not progress) as bar:
        for batch in loader:
            output = run_model(model, batch, device).float().cpu().numpy()
            for image, fname, slice_idx in zip(output, batch.fname, batch.slice_idx.tolist()):
                writer.add(fname, slice_idx, image)
            bar.update(len(output))
    writer.close()
    return ReconstructionTiming(len(dataset), time.perf_counter() - start)
