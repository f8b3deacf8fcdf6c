"""The official 2026 scoring loop (``leaderboard_eval.py`` / ``recon_eval.py`` with ``utils/common/metrics.py``
of ``LISTatSNU/FastMRI_challenge``, branch ``2026_baby_varnet_phase2``), written out from its facts: an oracle
for the tests and the baseline of ``benchmarks/eval_speed.py``, never the scorer.

Independent of :mod:`utils.evaluation.edition2026`: its own float32 convolution SSIM over the whole slice (as
:class:`~utils.evaluation.official_reference.OfficialSSIM`, returning the map), the mask written out with OpenCV
on a float64 array, one slice at a time, the reconstruction read per volume.

    python -m utils.evaluation.official_reference_2026 -lp LEADERBOARD -yp RECONSTRUCTIONS

prints the official 2026 lines.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch
import torch.nn.functional as F

from utils.evaluation.official_reference import OfficialSSIM

__all__ = ["official_2026_folder", "main"]


def _ssim_map(ssim: OfficialSSIM, x: torch.Tensor, y: torch.Tensor, data_range) -> torch.Tensor:
    """The (H - 6, W - 6) SSIM map of two (H, W) float32 images, with the official module's constants."""
    x, y = x[None, None], y[None, None]
    c1, c2 = (ssim.k1 * data_range) ** 2, (ssim.k2 * data_range) ** 2
    ux, uy = F.conv2d(x, ssim.w), F.conv2d(y, ssim.w)
    uxx, uyy, uxy = F.conv2d(x * x, ssim.w), F.conv2d(y * y, ssim.w), F.conv2d(x * y, ssim.w)
    vx, vy, vxy = ssim.cov_norm * (uxx - ux * ux), ssim.cov_norm * (uyy - uy * uy), ssim.cov_norm * (uxy - ux * uy)
    return ((2 * ux * uy + c1) * (2 * vxy + c2) / ((ux**2 + uy**2 + c1) * (vx + vy + c2)))[0, 0]


def _mask(target: np.ndarray) -> np.ndarray:
    mask = np.zeros(target.shape)
    mask[target > 2e-5] = 1
    kernel = np.ones((3, 3), np.uint8)
    mask = cv2.erode(mask, kernel, iterations=1)
    mask = cv2.dilate(mask, kernel, iterations=15)
    return cv2.erode(mask, kernel, iterations=14)


def official_2026_folder(target_dir: Path, recon_dir: Path, key: str = "reconstruction") -> tuple[float, float]:
    """(SSIM_full, SSIM_bbox) of one acceleration folder: slice-weighted and box-weighted means (0 if none)."""
    ssim = OfficialSSIM()
    full, boxes = [], []
    with torch.no_grad():
        for target_path in sorted(Path(target_dir).glob("*.h5")):
            with h5py.File(target_path, "r") as hf:
                targets, maximum = hf["image_label"][:], hf.attrs["max"]
                annotations = json.loads(hf.attrs.get("annotations", "{}"))
            with h5py.File(Path(recon_dir) / target_path.name, "r") as hf:
                recons = hf[key][:]
            for index, (target, recon) in enumerate(zip(targets, recons)):
                target_t, recon_t = torch.from_numpy(target), torch.from_numpy(recon)
                mask = torch.from_numpy(_mask(target)).type(torch.float)
                valid = mask[3:-3, 3:-3]
                if valid.sum() > 0:
                    full.append(((_ssim_map(ssim, recon_t * mask, target_t * mask, maximum) * valid).sum() / valid.sum()).item())
                for box in annotations.get(str(index), []):
                    x0, y0 = max(0, box["x"]), max(0, box["y"])
                    x1, y1 = min(target.shape[1], box["x"] + box["width"]), min(target.shape[0], box["y"] + box["height"])
                    if x1 - x0 >= 7 and y1 - y0 >= 7:
                        boxes.append(_ssim_map(ssim, recon_t[y0:y1, x0:x1], target_t[y0:y1, x0:x1], maximum).mean().item())
    return (sum(full) / len(full) if full else 0.0), (sum(boxes) / len(boxes) if boxes else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description="The official 2026 scoring loop, as a whole process (a baseline).")
    parser.add_argument("-lp", "--path_leaderboard_data", type=Path, required=True)
    parser.add_argument("-yp", "--path_your_data", type=Path, required=True)
    args = parser.parse_args()
    (full4, bbox4), (full8, bbox8) = (official_2026_folder(args.path_leaderboard_data / f"acc{acc}" / "image",
                                                           args.path_your_data / f"acc{acc}") for acc in (4, 8))
    print(f"Leaderboard SSIM_full : {(full4 + full8) / 2:.4f}")
    print(f"Leaderboard SSIM_bbox : {(bbox4 + bbox8) / 2:.4f}")
    print("=" * 10 + " Details " + "=" * 10)
    print(f"SSIM_full (acc4): {full4:.4f}   SSIM_full (acc8): {full8:.4f}")
    print(f"SSIM_bbox (acc4): {bbox4:.4f}   SSIM_bbox (acc8): {bbox8:.4f}")


if __name__ == "__main__":
    main()
