"""Validation: the leaderboard-identical SSIM per slice, by anatomy and acceleration, and the loss.

Each slice scores ``mean(leaderboard_ssim_map(output, target, fg_mask, max))``, exactly the number
``leaderboard_eval.py`` would give that slice, so model selection optimises what the leaderboard measures.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from utils.inference.reconstruct import run_model
from utils.inference.writer import ReconstructionWriter
from utils.metrics.ssim import leaderboard_ssim_map
from utils.mri.coils import rss_complex
from utils.mri.crop import CHALLENGE_SHAPE, center_crop_or_pad
from utils.mri.fft import ifft2c

__all__ = ["ValidationResult", "validate"]


@dataclass
class ValidationResult:
    """Means over validation slices (every slice weighs the same)."""

    loss: float
    ssim: float
    zero_filled_ssim: float  # the same score for the zero-filled input RSS(IFFT(masked k-space)), a baseline
    group_ssim: dict[str, float] = field(default_factory=dict)  # e.g. {"brain_acc4": 0.93, ...}
    images: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (caption, output | target side by side)


def _side_by_side(output: torch.Tensor, target: torch.Tensor, max_value: float) -> np.ndarray:
    """(384, 768) image in [0, 1]: output left, target right, both scaled by the volume max."""
    return np.clip(torch.cat([output, target], dim=-1).numpy() / max_value, 0.0, 1.0)


@torch.no_grad()
def validate(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: nn.Module,
    device: torch.device,
    writer: ReconstructionWriter | None = None,
    num_images: int = 0,
    progress: bool = True,
) -> ValidationResult:
    """Score ``model`` on every slice of ``loader``; optionally write the reconstructions."""
    model.eval()
    losses, scores, zero_filled_scores = [], defaultdict(list), []
    images = []
    for batch in tqdm(loader, desc="validation", unit="batch", disable=not progress, leave=False):
        output = run_model(model, batch, device).float()
        target, fg_mask = batch.target.to(device), batch.fg_mask.to(device)
        max_value = batch.max_value.to(device=device, dtype=torch.float64)
        losses.append(loss_fn(output, target, fg_mask, max_value).item() * len(output))
        slice_ssim = leaderboard_ssim_map(output, target, fg_mask, max_value).mean(dim=(-2, -1)).cpu()
        zero_filled = center_crop_or_pad(rss_complex(ifft2c(batch.masked_kspace.to(device)), dim=1), CHALLENGE_SHAPE)
        zero_filled_scores += leaderboard_ssim_map(zero_filled, target, fg_mask, max_value).mean(dim=(-2, -1)).tolist()
        for value, anatomy, acceleration in zip(slice_ssim.tolist(), batch.anatomy, batch.acceleration.tolist()):
            scores[f"{anatomy}_acc{acceleration}"].append(value)
        output, target = output.cpu(), target.cpu()
        for index, (fname, slice_idx) in enumerate(zip(batch.fname, batch.slice_idx.tolist())):
            if writer is not None:
                writer.add(fname, slice_idx, output[index].numpy())
            if len(images) < num_images:
                images.append((f"{fname} slice {slice_idx}", _side_by_side(output[index], target[index], float(batch.max_value[index]))))
    if writer is not None:
        writer.close()
    every_slice = [value for values in scores.values() for value in values]
    return ValidationResult(
        loss=float(np.sum(losses) / len(every_slice)),
        ssim=float(np.mean(every_slice)),
        zero_filled_ssim=float(np.mean(zero_filled_scores)),
        group_ssim={group: float(np.mean(values)) for group, values in sorted(scores.items())},
        images=images,
    )
