"""Scores of a batch of model outputs, in torch: the leaderboard SSIM of every slice and of its zero-filled input.

Training validation and expert validation both score batches here, so a slice gets the number
``leaderboard_eval.py`` would give it, next to the zero-filled baseline RSS(IFFT(masked k-space)).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from utils.data.transforms import Sample
from utils.metrics.score import SliceScore
from utils.metrics.ssim import leaderboard_ssim_map
from utils.mri.coils import rss_complex
from utils.mri.crop import CHALLENGE_SHAPE, center_crop_or_pad
from utils.mri.fft import ifft2c

__all__ = ["BatchScores", "zero_filled_image", "score_batch"]


def zero_filled_image(masked_kspace: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W, 2) masked k-space -> (B, 384, 384): RSS over coils of its IFFT, centre-cropped or padded."""
    return center_crop_or_pad(rss_complex(ifft2c(masked_kspace), dim=1), CHALLENGE_SHAPE)


@dataclass
class BatchScores:
    """One :class:`SliceScore` per slice of the batch, and the zero-filled images they were compared with."""

    scores: list[SliceScore]
    zero_filled: torch.Tensor  # (B, 384, 384) on the scoring device


def score_batch(output: torch.Tensor, batch: Sample, device: torch.device) -> BatchScores:
    """Leaderboard SSIM of ``output`` (B, 384, 384) and of the zero-filled input against ``batch.target``."""
    target, fg_mask = batch.target.to(device), batch.fg_mask.to(device)
    max_value = batch.max_value.to(device=device, dtype=torch.float64)
    ssim = leaderboard_ssim_map(output, target, fg_mask, max_value).mean(dim=(-2, -1)).tolist()
    zero_filled = zero_filled_image(batch.masked_kspace.to(device))
    zero_filled_ssim = leaderboard_ssim_map(zero_filled, target, fg_mask, max_value).mean(dim=(-2, -1)).tolist()
    scores = [
        SliceScore(acceleration, anatomy, fname, slice_idx, ssim[index], zero_filled_ssim=zero_filled_ssim[index])
        for index, (acceleration, anatomy, fname, slice_idx) in enumerate(
            zip(batch.acceleration.tolist(), batch.anatomy, batch.fname, batch.slice_idx.tolist())
        )
    ]
    return BatchScores(scores, zero_filled)
