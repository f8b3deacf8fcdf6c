"""SSIM exactly as the SNU FastMRI leaderboard computes it (fastMRI's ``SSIMLoss``).

7x7 uniform window, k1 = 0.01, k2 = 0.03, sample covariance (normalised by N / (N - 1) = 49 / 48), a valid
convolution (no padding, so a 384x384 image gives a 378x378 map) and ``data_range`` = the volume's ``max``
attribute. This equals scikit-image's ``structural_similarity(..., win_size=7, gaussian_weights=False,
use_sample_covariance=True, data_range=max)``, whose mean is also taken over the valid region only.

The formula lives once, in :func:`ssim_from_moments` (:mod:`utils.metrics.ssim_moments`, torch-free), which takes the five local moments (window means of
x, y, x^2, y^2, xy) as torch tensors or numpy arrays. Two ways compute those moments:

- :func:`ssim_map`: torch, a valid 7x7 convolution; differentiable, batched and dtype-preserving: the loss
  calls it on float32 model output, the scorer on CUDA;
- :func:`box_moments`: numpy, OpenCV's box filter with float64 running sums (every window mean exact to
  float64 rounding, about 10x faster than the convolution on a CPU); the leaderboard scorer on the CPU.

``data_range`` enters the constants after one rounding to the image dtype, as in the official script (a
float64 maximum multiplied into float32 tensors).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from utils.metrics.ssim_moments import K1, K2, WIN_SIZE, box_moments, ssim_from_moments

__all__ = ["WIN_SIZE", "ssim_from_moments", "box_moments", "ssim_map", "ssim", "masked_mean", "leaderboard_ssim_map"]


def _as_batch(image: torch.Tensor) -> torch.Tensor:
    if image.dim() == 2:
        return image[None, None]
    if image.dim() == 3:
        return image[:, None]
    if image.dim() == 4 and image.shape[1] == 1:
        return image
    raise ValueError(f"SSIM expects (H, W), (B, H, W) or (B, 1, H, W) images, got {tuple(image.shape)}")


def _constants(data_range: torch.Tensor | float, batch: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(C1, C2) of shape (B, 1, 1, 1) in the image dtype, computed in float64 first."""
    data_range = torch.as_tensor(data_range, dtype=torch.float64, device=like.device).reshape(-1)
    data_range = data_range.expand(batch) if data_range.numel() == 1 else data_range
    if data_range.numel() != batch:
        raise ValueError(f"data_range has {data_range.numel()} values for a batch of {batch} images")
    c1 = ((K1 * data_range) ** 2).to(like.dtype).view(batch, 1, 1, 1)
    c2 = ((K2 * data_range) ** 2).to(like.dtype).view(batch, 1, 1, 1)
    return c1, c2


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: torch.Tensor | float, win_size: int = WIN_SIZE) -> torch.Tensor:
    """Per-pixel SSIM of ``x`` against ``y``.

    Args:
        x, y: images (H, W), (B, H, W) or (B, 1, H, W) of the same shape and floating dtype.
        data_range: a scalar or one value per batch item (the volume ``max``).
    Returns:
        (B, H - win_size + 1, W - win_size + 1) SSIM map in the dtype of ``x``.
    """
    x, y = _as_batch(x), _as_batch(y)
    if x.shape != y.shape:
        raise ValueError(f"SSIM inputs differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    batch = x.shape[0]
    c1, c2 = _constants(data_range, batch, x)
    window = torch.ones(1, 1, win_size, win_size, dtype=x.dtype, device=x.device) / win_size**2
    moments = (F.conv2d(image, window) for image in (x, y, x * x, y * y, x * y))
    return ssim_from_moments(*moments, c1, c2, win_size)[:, 0]


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: torch.Tensor | float, win_size: int = WIN_SIZE) -> torch.Tensor:
    """Mean SSIM per image over the whole valid map, as the leaderboard scores a slice: (B,) tensor."""
    return ssim_map(x, y, data_range, win_size).mean(dim=(-2, -1))


def masked_mean(ssim_values: torch.Tensor, mask: torch.Tensor, win_size: int = WIN_SIZE) -> torch.Tensor:
    """Foreground-only SSIM (the 2026 ``SSIM_full``): sum(map * mask) / sum(mask) over the valid region.

    Args:
        ssim_values: (B, H - win_size + 1, W - win_size + 1) map from :func:`ssim_map`.
        mask: (B, H, W) foreground mask of the full image, cropped here to the map's valid region.
    Returns:
        (B,) values; NaN for an image whose foreground is empty.
    """
    border = win_size // 2
    height, width = mask.shape[-2:]
    mask = mask[..., border : height - border, border : width - border].to(ssim_values.dtype)
    return (ssim_values * mask).sum(dim=(-2, -1)) / mask.sum(dim=(-2, -1))


def leaderboard_ssim_map(
    reconstruction: torch.Tensor, target: torch.Tensor, fg_mask: torch.Tensor, data_range: torch.Tensor | float
) -> torch.Tensor:
    """The leaderboard's SSIM map: both images multiplied by the foreground mask first (SPEC §2).

    Its mean over the map is the official per-slice score; :func:`masked_mean` of it is SSIM_full. The
    training loss, validation and the leaderboard scorer all call this.

    Args:
        reconstruction, target, fg_mask: (B, H, W); data_range: scalar or (B,).
    Returns:
        (B, H - 6, W - 6) SSIM map.
    """
    return ssim_map(reconstruction * fg_mask, target * fg_mask, data_range)
