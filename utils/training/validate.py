"""Validation: the leaderboard-identical SSIM per slice, by anatomy and acceleration, the 2026 numbers, and the loss.

Each slice scores ``mean(leaderboard_ssim_map(output, target, fg_mask, max))``, exactly the number
``leaderboard_eval.py`` would give that slice, and the slices combine as the leaderboard combines them: the
mean of each acceleration's slices, then Total = (SSIM acc4 + SSIM acc8) / 2 (over the accelerations present),
so model selection optimises what the leaderboard measures. The 2026 SSIM_full and SSIM_bbox (lesion boxes of
the image files) and their Total without the speed tiebreak come with it (:func:`utils.metrics.score.edition_2026`).
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
from utils.evaluation.slices import score_batch
from utils.figures import ComparisonRow
from utils.inference.reconstruct import run_model
from utils.metrics.score import SliceScore, edition_2026, leaderboard_total

__all__ = ["ValidationResult", "validate"]


@dataclass
class ValidationResult:
    """The leaderboard Total of the validation slices, its parts, and the mean loss per slice."""

    loss: float
    ssim: float  # the leaderboard Total: mean over accelerations of the mean SSIM of their slices
    zero_filled_ssim: float  # the same Total for the zero-filled input RSS(IFFT(masked k-space)), a baseline
    ssim_full: float = float("nan")  # 2026: SSIM_full, averaged over the accelerations
    ssim_bbox: float = float("nan")  # 2026: SSIM_bbox (0 where no slice has a lesion box, as the official script)
    group_ssim: dict[str, float] = field(default_factory=dict)  # e.g. {"brain_acc4": 0.93, "acc4": 0.91, ...}
    boxes: int = 0  # lesion boxes scored
    images: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (caption, output | target side by side)

    @property
    def total_2026(self) -> float:
        """The 2026 Total without its speed tiebreak: 0.5 SSIM_full + 0.5 SSIM_bbox."""
        return 0.5 * self.ssim_full + 0.5 * self.ssim_bbox
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


def group_means(scores: list[SliceScore]) -> dict[str, float]:
    """Mean SSIM per anatomy x acceleration (``brain_acc4``) and per acceleration (``acc4``: what the leaderboard averages)."""
    groups = defaultdict(list)
    for score in scores:
        groups[score.group].append(score.ssim)
        groups[f"acc{score.acceleration}"].append(score.ssim)
    return {group: float(np.mean(values)) for group, values in sorted(groups.items())}


@dataclass
class _Kept:
    """What one rank keeps of its share besides the scores: batch losses, images, outputs, figure rows."""

    losses: list[tuple[float, int]] = field(default_factory=list)  # (loss x batch size, batch size)
    images: list[tuple[str, np.ndarray]] = field(default_factory=list)
    outputs: list[tuple[str, int, np.ndarray]] = field(default_factory=list)
    rows: list[ComparisonRow] = field(default_factory=list)


def _keep(kept: _Kept, batch, output: torch.Tensor, target: torch.Tensor, zero_filled: torch.Tensor, scores: list[SliceScore],
          picks: dict, keep_outputs: bool, num_images: int) -> None:
    """Keep the picked slices' figure rows, the reconstructions (``keep_outputs``) and the first ``num_images`` images."""
    for index, score in enumerate(scores):
        max_value = float(batch.max_value[index])
        if (score.fname, score.slice_idx) in picks:
            kept.rows.append(ComparisonRow(
                f"{picks[score.fname, score.slice_idx]} | {score.fname} slice {score.slice_idx}", output[index].numpy().copy(),
                target[index].numpy().copy(), max_value, score.ssim, zero_filled[index].cpu().numpy().copy(), score.zero_filled_ssim,
            ))
        if keep_outputs:
            kept.outputs.append((score.fname, score.slice_idx, output[index].numpy()))
        if len(kept.images) < num_images:
            kept.images.append((f"{score.fname} slice {score.slice_idx}", _side_by_side(output[index], target[index], max_value)))


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
    scores, kept = [], _Kept()
    for batch in tqdm(loader, desc="validation", unit="batch", disable=not progress, leave=False):
        output = run_model(model, batch, device).float()
        max_value = batch.max_value.to(device=device, dtype=torch.float64)
        loss = loss_fn(output, batch.target.to(device), batch.fg_mask.to(device), max_value, batch.box_mask.to(device)).item()
        kept.losses.append((loss * len(output), len(output)))
        scored = score_batch(output, batch, device)
        scores.extend(scored.scores)
        _keep(kept, batch, output.cpu(), batch.target, scored.zero_filled, scored.scores, picks, keep_outputs, num_images)
    scores = [score for shard in dist.gather(scores) for score in shard]
    losses = [loss for shard in dist.gather(kept.losses) for loss in shard]
    outputs = [o for shard in dist.gather_to_main(kept.outputs) or [] for o in shard] if keep_outputs else []  # rank 0 writes them
    rows = sorted((r for shard in dist.gather_to_main(kept.rows) or [] for r in shard), key=lambda r: r.label) if figure_rows else []
    edition = edition_2026(scores)
    return ValidationResult(
        loss=float(np.sum([loss for loss, _ in losses]) / sum(count for _, count in losses)),
        ssim=leaderboard_total(scores),
        zero_filled_ssim=leaderboard_total(scores, "zero_filled_ssim"),
        ssim_full=edition.full,
        ssim_bbox=edition.bbox,
        boxes=sum(edition.boxes.values()),
        group_ssim=group_means(scores),
        images=kept.images,
        outputs=outputs,
        figure_rows=rows,
    )
