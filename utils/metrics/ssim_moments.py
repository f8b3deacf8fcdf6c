"""The SSIM formula from window moments, and the CPU way to get those moments: numpy and OpenCV, no torch.

:func:`ssim_from_moments` is the one SSIM formula of the repository (the training loss, validation and the
leaderboard scorer on CUDA reach it through :mod:`utils.metrics.ssim`); :func:`box_moments` feeds it on the CPU.
Kept free of torch so that scoring on the CPU (``leaderboard_eval.py``) starts without importing it.
"""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["K1", "K2", "WIN_SIZE", "box_moments", "ssim_from_moments"]

WIN_SIZE = 7
K1 = 0.01
K2 = 0.03


def ssim_from_moments(ux, uy, uxx, uyy, uxy, c1, c2, win_size: int = WIN_SIZE):
    """Per-pixel SSIM from the window means of x, y, x^2, y^2 and xy (torch tensors or numpy arrays).

    ``(2 ux uy + C1)(2 vxy + C2) / ((ux^2 + uy^2 + C1)(vx + vy + C2))`` with the sample covariances
    ``v = N / (N - 1) * (E[ab] - E[a] E[b])`` of the official script, arranged to need few array passes.
    Numpy arrays take the same operations in the same order, in place on four temporaries (the inputs are left
    alone): bitwise the same map, in about 40 % of the time, which the CPU scorer spends on this formula.
    """
    num_pixels = win_size**2
    cov_norm = num_pixels / (num_pixels - 1)
    if isinstance(ux, np.ndarray):
        return _ssim_in_place(ux, uy, uxx, uyy, uxy, c1, c2, cov_norm)
    uxuy = ux * uy
    a1 = 2 * uxuy + c1
    a2 = (2 * cov_norm) * (uxy - uxuy) + c2
    squares = ux * ux + uy * uy
    b1 = squares + c1
    b2 = cov_norm * (uxx + uyy - squares) + c2
    return (a1 * a2) / (b1 * b2)


def _ssim_in_place(ux, uy, uxx, uyy, uxy, c1, c2, cov_norm: float) -> np.ndarray:
    """:func:`ssim_from_moments`'s arithmetic on numpy arrays, step for step, with four allocations instead of 15
    (torch's autograd forbids this reuse, so the tensor path stays out of place)."""
    a1 = ux * uy  # uxuy, then a1
    a2 = uxy - a1
    a2 *= 2 * cov_norm
    a2 += c2
    a1 *= 2
    a1 += c1
    a1 *= a2  # numerator
    squares = ux * ux
    squares += uy * uy
    b2 = uxx + uyy
    b2 -= squares
    b2 *= cov_norm
    b2 += c2
    squares += c1  # b1
    squares *= b2  # denominator
    a1 /= squares
    return a1


def box_moments(x: np.ndarray, y: np.ndarray, win_size: int = WIN_SIZE) -> tuple[np.ndarray, ...]:
    """Valid-region window means (ux, uy, uxx, uyy, uxy) of two (H, W) float32 (or float64) images, each
    (H - 6, W - 6) in the images' dtype.

    OpenCV sums each window in float64 (running sums along rows and columns) and rounds the mean once to
    float32, where the official float32 convolution rounds 49 times; float64 images stay float64.
    """
    border = win_size // 2

    def mean(image: np.ndarray) -> np.ndarray:
        depth = cv2.CV_64F if image.dtype == np.float64 else cv2.CV_32F
        filtered = cv2.boxFilter(image, depth, (win_size, win_size), normalize=True, borderType=cv2.BORDER_ISOLATED)
        return filtered[border : image.shape[0] - border, border : image.shape[1] - border]

    return mean(x), mean(y), mean(x * x), mean(y * y), mean(x * y)
