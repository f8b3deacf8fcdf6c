"""The official 2025 ``leaderboard_eval.py`` loop, transcribed: an oracle and a baseline, never the scorer.

This is deliberately a second, independent implementation: its own SSIM module and the mask written out
with OpenCV per slice, reopening both h5 files for every slice exactly as the official script does. The
tests check that :mod:`utils.evaluation.leaderboard` gives the same numbers, and
``benchmarks/eval_speed.py`` times it against the vectorised scorer, also as a whole process:

    python -m utils.evaluation.official_reference -lp LEADERBOARD -yp RECONSTRUCTIONS

prints the official script's three lines for every file of ``LEADERBOARD/acc{4,8}/image``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["OfficialSSIM", "official_folder_ssim"]


class OfficialSSIM(nn.Module):
    """The official script's SSIM module (7x7 uniform window, sample covariance, mean of the valid map)."""

    def __init__(self, win_size: int = 7, k1: float = 0.01, k2: float = 0.03):
        super().__init__()
        self.win_size = win_size
        self.k1, self.k2 = k1, k2
        self.register_buffer("w", torch.ones(1, 1, win_size, win_size) / win_size**2)
        num_pixels = win_size**2
        self.cov_norm = num_pixels / (num_pixels - 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor, data_range) -> torch.Tensor:
        x = x.unsqueeze(0).unsqueeze(0)
        y = y.unsqueeze(0).unsqueeze(0)
        c1 = (self.k1 * data_range) ** 2
        c2 = (self.k2 * data_range) ** 2
        ux = F.conv2d(x, self.w)
        uy = F.conv2d(y, self.w)
        uxx = F.conv2d(x * x, self.w)
        uyy = F.conv2d(y * y, self.w)
        uxy = F.conv2d(x * y, self.w)
        vx = self.cov_norm * (uxx - ux * ux)
        vy = self.cov_norm * (uyy - uy * uy)
        vxy = self.cov_norm * (uxy - ux * uy)
        a1, a2, b1, b2 = (2 * ux * uy + c1, 2 * vxy + c2, ux**2 + uy**2 + c1, vx + vy + c2)
        d = b1 * b2
        s = (a1 * a2) / d
        return s.mean()


def official_folder_ssim(target_dir: Path, recon_dir: Path, names: list[str], key: str = "reconstruction") -> list[float]:
    """Per-slice official SSIM of ``names`` ({brain,knee}_...h5), one slice and two file opens at a time."""
    ssim_calculator = OfficialSSIM()
    scores = []
    with torch.no_grad():
        for name in names:
            threshold = 5e-5 if name.startswith("brain") else 2e-5
            with h5py.File(Path(target_dir) / name, "r") as hf:
                num_slices = hf["image_label"].shape[0]
            for i_slice in range(num_slices):
                with h5py.File(Path(target_dir) / name, "r") as hf:
                    target = hf["image_label"][i_slice]
                    mask = np.zeros(target.shape)
                    mask[target > threshold] = 1
                    kernel = np.ones((3, 3), np.uint8)
                    mask = cv2.erode(mask, kernel, iterations=1)
                    mask = cv2.dilate(mask, kernel, iterations=15)
                    mask = cv2.erode(mask, kernel, iterations=14)
                    target = torch.from_numpy(target)
                    mask = torch.from_numpy(mask).type(torch.float)
                    maximum = hf.attrs["max"]
                with h5py.File(Path(recon_dir) / name, "r") as hf:
                    recon = torch.from_numpy(hf[key][i_slice])
                scores.append(float(ssim_calculator(recon * mask, target * mask, maximum).cpu().numpy()))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description="The official per-slice loop, as a whole process (a baseline).")
    parser.add_argument("-lp", "--path_leaderboard_data", type=Path, required=True)
    parser.add_argument("-yp", "--path_your_data", type=Path, required=True)
    args = parser.parse_args()
    means = {}
    for acceleration in (4, 8):
        target_dir = args.path_leaderboard_data / f"acc{acceleration}" / "image"
        names = sorted(path.name for path in target_dir.glob("*.h5"))
        scores = official_folder_ssim(target_dir, args.path_your_data / f"acc{acceleration}", names)
        means[acceleration] = sum(scores) / len(scores)
    print(f"Leaderboard SSIM : {(means[4] + means[8]) / 2:.4f}")
    print(f"Leaderboard SSIM (acc4): {means[4]:.4f}")
    print(f"Leaderboard SSIM (acc8): {means[8]:.4f}")


if __name__ == "__main__":
    main()
