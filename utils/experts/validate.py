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

import numpy as np
import torch

from utils.data.dataset import SliceDataset
from utils.data.layout import parse_volume_name
from utils.experts.serve import ExpertSet, route_volumes
from utils.inference.reconstruct import run_model, volume_loader
from utils.metrics.ssim import leaderboard_ssim_map
from utils.mri.coils import rss_complex
from utils.mri.crop import CHALLENGE_SHAPE, center_crop_or_pad
from utils.mri.fft import ifft2c

__all__ = ["ExpertValidation", "validate_experts", "format_validation"]


@dataclass
class ExpertValidation:
    """Per-slice (group, SSIM, zero-filled SSIM) records and which route served each group's volumes."""

    records: list[tuple[str, float, float]] = field(default_factory=list)
    served: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    unsure: list[str] = field(default_factory=list)

    def mean(self, prefix_or_suffix: str, column: int = 1) -> float:
        values = [record[column] for record in self.records
                  if record[0] == prefix_or_suffix or record[0].endswith("_" + prefix_or_suffix)]
        return float(np.mean(values)) if values else float("nan")

    def total(self, column: int = 1) -> float:
        """(mean of the acc4 slices + mean of the acc8 slices) / 2, over the accelerations present."""
        means = [self.mean(acc, column) for acc in ("acc4", "acc8")]
        return float(np.nanmean(means))


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
            output = run_model(expert, batch, device).float()
            target, fg_mask = batch.target.to(device), batch.fg_mask.to(device)
            max_value = batch.max_value.to(device=device, dtype=torch.float64)
            ssim = leaderboard_ssim_map(output, target, fg_mask, max_value).mean(dim=(-2, -1)).tolist()
            zero_filled = center_crop_or_pad(rss_complex(ifft2c(batch.masked_kspace.to(device)), dim=1), CHALLENGE_SHAPE)
            zero_filled_ssim = leaderboard_ssim_map(zero_filled, target, fg_mask, max_value).mean(dim=(-2, -1)).tolist()
            for index, (anatomy, acceleration) in enumerate(zip(batch.anatomy, batch.acceleration.tolist())):
                result.records.append((f"{anatomy}_acc{acceleration}", ssim[index], zero_filled_ssim[index]))
    return result


def format_validation(result: ExpertValidation, title: str) -> str:
    groups = sorted({record[0] for record in result.records})
    lines = [title, f"{'group':<12}{'slices':>7}{'SSIM':>9}{'zero-filled':>13}  served by"]
    for group in groups:
        count = sum(record[0] == group for record in result.records)
        served = ", ".join(f"{route} ({n} volume{'s' * (n != 1)})" for route, n in sorted(result.served[group].items()))
        lines.append(f"{group:<12}{count:>7}{result.mean(group):>9.4f}{result.mean(group, 2):>13.4f}  {served}")
    for acc in ("acc4", "acc8"):
        lines.append(f"{acc:<12}{sum(r[0].endswith(acc) for r in result.records):>7}{result.mean(acc):>9.4f}{result.mean(acc, 2):>13.4f}")
    lines.append(f"{'Total':<12}{len(result.records):>7}{result.total():>9.4f}{result.total(2):>13.4f}")
    lines += [f"unsure: {line}" for line in result.unsure]
    return "\n".join(lines)
