"""Scores of a batch of model outputs, in torch: the leaderboard SSIM of every slice and of its zero-filled input,
and the 2026 SSIM_full and SSIM of each lesion box.

Training validation and expert validation both score batches here, so a slice gets the numbers
``leaderboard_eval.py`` would give it (2025, and 2026 with its one 2e-5 mask threshold), next to the zero-filled
baseline RSS(IFFT(masked k-space)).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from utils.data.transforms import Sample
from utils.metrics.score import SliceScore
from utils.metrics.foreground import MASK_ANATOMY_2026, foreground_mask
from utils.metrics.ssim import leaderboard_ssim_map, masked_mean, ssim_map
from utils.mri.coils import rss_complex
from utils.mri.crop import CHALLENGE_SHAPE, center_crop_or_pad
from utils.mri.fft import ifft2c

__all__ = ["BatchScores", "zero_filled_image", "box_ssims", "score_batch"]



def zero_filled_image(masked_kspace: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W, 2) masked k-space -> (B, 384, 384): RSS over coils of its IFFT, centre-cropped or padded."""
    return center_crop_or_pad(rss_complex(ifft2c(masked_kspace), dim=1), CHALLENGE_SHAPE)


@dataclass
class BatchScores:
    """One :class:`SliceScore` per slice of the batch, and the zero-filled images they were compared with."""

    scores: list[SliceScore]
    zero_filled: torch.Tensor  # (B, 384, 384) on the scoring device


def box_ssims(output: torch.Tensor, target: torch.Tensor, max_value: torch.Tensor, boxes: torch.Tensor) -> list[tuple[float, ...]]:
    """The 2026 SSIM of each box of each slice: the mean SSIM map of the unmasked crops, in float64 (on a small
    crop float32's cancellation in the variances moves the mean by up to 5e-6; the crops are cheap).

    Args:
        output, target: (B, 384, 384); max_value: (B,); boxes: (B, MAX_BOXES, 4) rows (x, y, w, h), zero rows unused.
    """
    values = []
    for index, rows in enumerate(boxes.tolist()):
        crops = [(slice(y, y + h), slice(x, x + w)) for x, y, w, h in rows if w > 0 and h > 0]
        values.append(tuple(float(ssim_map(output[index][c].double(), target[index][c].double(), max_value[index]).mean()) for c in crops))
    return values


def score_batch(output: torch.Tensor, batch: Sample, device: torch.device) -> BatchScores:
    """Leaderboard SSIM of ``output`` (B, 384, 384) and of the zero-filled input against ``batch.target``, and the
    2026 SSIM_full and box SSIMs of ``output``."""
    target, fg_mask = batch.target.to(device), batch.fg_mask.to(device)
    max_value = batch.max_value.to(device=device, dtype=torch.float64)
    ssim = leaderboard_ssim_map(output, target, fg_mask, max_value).mean(dim=(-2, -1)).tolist()
    mask_2026 = torch.from_numpy(foreground_mask(batch.target.numpy(), MASK_ANATOMY_2026)).to(device)
    full = masked_mean(leaderboard_ssim_map(output, target, mask_2026, max_value), mask_2026).tolist()
    boxes = box_ssims(output, target, max_value, batch.boxes)
    zero_filled = zero_filled_image(batch.masked_kspace.to(device))
    zero_filled_ssim = leaderboard_ssim_map(zero_filled, target, fg_mask, max_value).mean(dim=(-2, -1)).tolist()
    scores = [
        SliceScore(acceleration, anatomy, fname, slice_idx, ssim[index], full[index], zero_filled_ssim[index], boxes[index])
        for index, (acceleration, anatomy, fname, slice_idx) in enumerate(
            zip(batch.acceleration.tolist(), batch.anatomy, batch.fname, batch.slice_idx.tolist())
        )
    ]
    return BatchScores(scores, zero_filled)
