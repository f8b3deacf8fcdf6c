"""Validation of an expert set: route every volume of a train/val split once, reconstruct it with its expert,
and score every slice with the leaderboard SSIM against ``image_label``.

The slices combine as the leaderboard and training validation combine them: per anatomy x acceleration
(from the file name: the truth, whatever the router decided), per acceleration, and Total =
(SSIM acc4 + SSIM acc8) / 2. A manifest with the single route ``all`` scores a shared model the same way.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from utils.data.dataset import SliceDataset
from utils.data.layout import parse_volume_name
from utils.data.transforms import Sample
from utils.evaluation.slices import score_batch
from utils.experts.serve import ExpertSet, route_volumes
from utils.inference.reconstruct import run_model, volume_loader
from utils.metrics.score import SliceScore, edition_2026, leaderboard_total, mean_score

__all__ = ["ExpertValidation", "validate_experts", "format_validation"]


@dataclass
class ExpertValidation:
    """Per-slice scores (anatomy and acceleration from the file names) and which route served each group's volumes."""

    scores: list[SliceScore] = field(default_factory=list)
    served: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    unsure: list[str] = field(default_factory=list)

    def group_scores(self, group: str) -> list[SliceScore]:
        """The slices of ``brain_acc4`` (an anatomy x acceleration) or of ``acc4`` (an acceleration)."""
        return [s for s in self.scores if group in (s.group, f"acc{s.acceleration}")]

    def mean(self, group: str, field: str = "ssim") -> float:
        return mean_score(self.group_scores(group), field)

    def total(self, field: str = "ssim") -> float:
        """(mean of the acc4 slices + mean of the acc8 slices) / 2, over the accelerations present."""
        return leaderboard_total(self.scores, field)


@torch.inference_mode()
def validate_experts(experts: ExpertSet, split_dir: Path, device: torch.device) -> ExpertValidation:
    """Route and reconstruct every volume of ``split_dir`` (its own masks) and score each slice."""
    result = ExpertValidation()
    routed, _ = route_volumes(experts, Path(split_dir) / "kspace")
    groups = defaultdict(list)
    for volume in routed:
        groups[volume.route].append(volume)
        name = parse_volume_name(volume.path)
        result.served[f"{name.anatomy}_acc{name.acceleration}"][volume.route] += 1
        if volume.decision is not None and experts.unsure(volume.decision):
            result.unsure.append(f"{volume.path.name} -> {volume.route}: {'; '.join(experts.unsure(volume.decision))}")
    for route, volumes in groups.items():
        names = {parse_volume_name(volume.path) for volume in volumes}
        expert = experts.experts[route]
        dataset = SliceDataset(split_dir, expert.transform, keep_volume=names.__contains__)
        for batch in volume_loader(dataset, batch_size=1):
            result.scores.extend(score_batch(run_model(expert, batch, device).float(), _first_input(batch), device).scores)
    return result


def _first_input(batch: Sample) -> Sample:
    """``batch`` with one masked k-space: an ensemble's may hold one per input transform, and the zero-filled
    baseline is computed from the first (its first members' input)."""
    inputs = batch.masked_kspace
    return batch if isinstance(inputs, torch.Tensor) else batch._replace(masked_kspace=inputs[0])


def format_validation(result: ExpertValidation, title: str) -> str:
    groups = sorted({score.group for score in result.scores})
    lines = [title, f"{'group':<12}{'slices':>7}{'SSIM':>9}{'zero-filled':>13}  served by"]
    for group in groups:
        served = ", ".join(f"{route} ({n} volume{'s' * (n != 1)})" for route, n in sorted(result.served[group].items()))
        lines.append(f"{group:<12}{len(result.group_scores(group)):>7}{result.mean(group):>9.4f}"
                     f"{result.mean(group, 'zero_filled_ssim'):>13.4f}  {served}")
    for acc in ("acc4", "acc8"):
        lines.append(f"{acc:<12}{len(result.group_scores(acc)):>7}{result.mean(acc):>9.4f}{result.mean(acc, 'zero_filled_ssim'):>13.4f}")
    lines.append(f"{'Total':<12}{len(result.scores):>7}{result.total():>9.4f}{result.total('zero_filled_ssim'):>13.4f}")
    edition = edition_2026(result.scores)
    lines.append(f"2026: SSIM_full {edition.full:.4f}, SSIM_bbox {edition.bbox:.4f} ({sum(edition.boxes.values())} boxes); "
                 f"2026 Total (no tiebreak) {0.5 * edition.full + 0.5 * edition.bbox:.4f}")
    lines += [f"unsure: {line}" for line in result.unsure]
    return "\n".join(lines)
