"""Validation: the leaderboard-identical SSIM per slice, by anatomy and acceleration, and the loss.

Each slice scores ``mean(leaderboard_ssim_map(output, target, fg_mask, max))``, exactly the number
``leaderboard_eval.py`` would give that slice, and the slices combine as the leaderboard combines them: the
mean of each acceleration's slices, then Total = (SSIM acc4 + SSIM acc8) / 2 (over the accelerations present),
so model selection optimises what the leaderboard measures.
Under DDP each rank scores its share of the volumes and the per-slice numbers of all ranks are gathered
before averaging, so the result is the single-process one.
With ``figure_rows`` one representative slice per anatomy x acceleration (the middle slice of the group's
first volume, the same on every rank) is kept with its zero-filled input and target for the validation grid
of :mod:`utils.figures`; nothing else is kept.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from utils.data.dataset import SliceDataset
from utils.distributed import Distributed
from utils.figures import ComparisonRow
from utils.inference.reconstruct import run_model
from utils.metrics.ssim import leaderboard_ssim_map
from utils.mri.coils import rss_complex
from utils.mri.crop import CHALLENGE_SHAPE, center_crop_or_pad
from utils.mri.fft import ifft2c

__all__ = ["ValidationResult", "validate"]


@dataclass
class ValidationResult:
    """The leaderboard Total of the validation slices, its parts, and the mean loss per slice."""

    loss: float
    ssim: float  # the leaderboard Total: mean over accelerations of the mean SSIM of their slices
    zero_filled_ssim: float  # the same Total for the zero-filled input RSS(IFFT(masked k-space)), a baseline
    group_ssim: dict[str, float] = field(default_factory=dict)  # e.g. {"brain_acc4": 0.93, "acc4": 0.91, ...}
    images: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (caption, output | target side by side)
    outputs: list[tuple[str, int, np.ndarray]] = field(default_factory=list)  # (fname, slice, image) with keep_outputs
    figure_rows: list[ComparisonRow] = field(default_factory=list)  # one per anatomy x acceleration, with figure_rows


def _side_by_side(output: torch.Tensor, target: torch.Tensor, max_value: float) -> np.ndarray:
    """(384, 768) image in [0, 1]: output left, target right, both scaled by the volume max."""
    return np.clip(torch.cat([output, target], dim=-1).numpy() / max_value, 0.0, 1.0)


def representative_slices(dataset: SliceDataset) -> dict[tuple[str, int], str]:
    """``{(fname, slice): "brain_acc4", ...}``: the middle slice of the first volume of each anatomy x acceleration."""
    picks = {}
    for volume in dataset.volumes:
        group = f"{volume.name.anatomy}_acc{volume.name.acceleration}"
        if group not in picks.values():
            picks[(volume.kspace_path.name, volume.kspace.num_slices // 2)] = group
    return picks


def _leaderboard_total(records: list[tuple], column: int) -> float:
    """(SSIM acc4 + SSIM acc8) / 2 of ``record[column]``: each acceleration's slice mean, then their mean."""
    by_acceleration = defaultdict(list)
    for record in records:
        by_acceleration[record[0].split("_")[-1]].append(record[column])
    return float(np.mean([np.mean(values) for values in by_acceleration.values()]))


@torch.no_grad()
def validate(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: nn.Module,
    device: torch.device,
    num_images: int = 0,
    progress: bool = True,
    dist: Distributed | None = None,
    keep_outputs: bool = False,
    figure_rows: bool = False,
) -> ValidationResult:
    """Score ``model`` on every slice of ``loader`` (this rank's share under DDP); with ``keep_outputs`` the
    reconstructions are returned too, and with ``figure_rows`` the representative slices, both gathered
    from every rank on rank 0 (which writes them)."""
    model.eval()
    dist = dist or Distributed()
    picks = representative_slices(loader.dataset) if figure_rows else {}
    records, images, outputs = [], [], []  # one per slice: (group, ssim, zero-filled ssim, its batch's loss x size once)
    rows = []  # the picked slices only
    for batch in tqdm(loader, desc="validation", unit="batch", disable=not progress, leave=False):
        output = run_model(model, batch, device).float()
        target, fg_mask = batch.target.to(device), batch.fg_mask.to(device)
        max_value = batch.max_value.to(device=device, dtype=torch.float64)
        batch_loss = loss_fn(output, target, fg_mask, max_value).item() * len(output)
        slice_ssim = leaderboard_ssim_map(output, target, fg_mask, max_value).mean(dim=(-2, -1)).tolist()
        zero_filled = center_crop_or_pad(rss_complex(ifft2c(batch.masked_kspace.to(device)), dim=1), CHALLENGE_SHAPE)
        zero_filled_ssim = leaderboard_ssim_map(zero_filled, target, fg_mask, max_value).mean(dim=(-2, -1)).tolist()
        for index, (anatomy, acceleration) in enumerate(zip(batch.anatomy, batch.acceleration.tolist())):
            loss_share = batch_loss if index == 0 else 0.0  # the batch's loss once, with its slice count
            records.append((f"{anatomy}_acc{acceleration}", slice_ssim[index], zero_filled_ssim[index], loss_share))
        output, target = output.cpu(), target.cpu()
        for index, (fname, slice_idx) in enumerate(zip(batch.fname, batch.slice_idx.tolist())):
            if (fname, slice_idx) in picks:
                rows.append(ComparisonRow(
                    f"{picks[fname, slice_idx]} | {fname} slice {slice_idx}", output[index].numpy().copy(), target[index].numpy().copy(),
                    float(batch.max_value[index]), slice_ssim[index], zero_filled[index].cpu().numpy().copy(), zero_filled_ssim[index],
                ))
            if keep_outputs:
                outputs.append((fname, slice_idx, output[index].numpy()))
            if len(images) < num_images:
                images.append((f"{fname} slice {slice_idx}", _side_by_side(output[index], target[index], float(batch.max_value[index]))))
    records = [record for shard in dist.gather(records) for record in shard]
    if keep_outputs:  # the reconstructions go to rank 0 only (it writes them)
        outputs = [output for shard in dist.gather_to_main(outputs) or [] for output in shard]
    if figure_rows:
        rows = sorted((row for shard in dist.gather_to_main(rows) or [] for row in shard), key=lambda row: row.label)
    scores = defaultdict(list)
    for group, value, _, _ in records:
        scores[group].append(value)
        scores[group.split("_")[-1]].append(value)  # "acc4" / "acc8": what the leaderboard averages
    return ValidationResult(
        loss=float(np.sum([record[3] for record in records]) / len(records)),
        ssim=_leaderboard_total(records, 1),
        zero_filled_ssim=_leaderboard_total(records, 2),
        group_ssim={group: float(np.mean(values)) for group, values in sorted(scores.items())},
        images=images,
        outputs=outputs,
        figure_rows=rows,
    )
