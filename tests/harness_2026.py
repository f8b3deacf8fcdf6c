"""Stand-ins for the 2026 organisers' ``recon_eval.py`` and ``utils/common/metrics.py``, written from their facts.

The official files may not be copied into this project; these are our own code that exercises exactly the same
import and call contract (LISTatSNU/FastMRI_challenge, branch ``2026_baby_varnet_phase2``):

- ``metrics.py`` does ``from utils.common.loss_function import SSIMLoss``, subclasses it, and uses its ``w``,
  ``k1``, ``k2``, ``cov_norm`` and ``win_size`` with ``F.conv2d(X, self.w)``;
- ``recon_eval.py`` runs from the repository root, imports ``save_reconstructions`` from ``utils.common.utils``
  and ``INPUT_KIND, load_model, prep_volume, recon_slice`` from ``utils.learning.test_part``; sets
  ``args.exp_dir = ../result/<net_name>/checkpoints``; walks ``<path_data>/acc{4,8}/image`` in sorted order
  (any file name), hands ``prep_volume`` the image path and the same-named k-space path (None if absent) and
  the device; runs ``recon_slice`` on the first 5 slices of every volume untimed, then on every slice at batch 1
  under ``torch.no_grad``, synchronised and timed; expects a 2-D (384, 384) float32 tensor on the device;
  scores SSIM_full (2e-5 mask) per slice and SSIM_bbox per box of ``attrs['annotations']``; writes each
  acceleration with ``save_reconstructions(dict, Path)``; prints the official lines.

:func:`install` writes them into a copy of the repository for ``tests/test_harness_2026.py``.
"""
from __future__ import annotations

import shutil
from pathlib import Path

METRICS = '''
import cv2
import numpy as np
import torch.nn.functional as F

from utils.common.loss_function import SSIMLoss


class SSIM(SSIMLoss):
    def forward(self, X, Y, data_range):
        if X.dim() != 2 or Y.dim() != 2:
            raise ValueError("SSIM expects 2D (H, W) inputs")
        X, Y = X[None, None], Y[None, None]
        c1, c2 = (self.k1 * data_range) ** 2, (self.k2 * data_range) ** 2
        ux, uy = F.conv2d(X, self.w), F.conv2d(Y, self.w)
        vx = self.cov_norm * (F.conv2d(X * X, self.w) - ux * ux)
        vy = self.cov_norm * (F.conv2d(Y * Y, self.w) - uy * uy)
        vxy = self.cov_norm * (F.conv2d(X * Y, self.w) - ux * uy)
        return ((2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2)))[0, 0]


def foreground_mask(target):
    mask = (target > 2e-5).astype(np.float64)
    kernel = np.ones((3, 3), np.uint8)
    return cv2.erode(cv2.dilate(cv2.erode(mask, kernel, iterations=1), kernel, iterations=15), kernel, iterations=14)


def ssim_full(ssim, recon, target, mask, data_range):
    border = ssim.win_size // 2
    valid = mask[border:mask.shape[0] - border, border:mask.shape[1] - border]
    if valid.sum() <= 0:
        return None
    return ((ssim(recon * mask, target * mask, data_range) * valid).sum() / valid.sum()).item()


def ssim_bbox(ssim, recon, target, box, data_range):
    x0, y0 = max(0, box["x"]), max(0, box["y"])
    x1, y1 = min(target.shape[1], box["x"] + box["width"]), min(target.shape[0], box["y"] + box["height"])
    if x1 - x0 < ssim.win_size or y1 - y0 < ssim.win_size:
        return None
    return ssim(recon[y0:y1, x0:x1], target[y0:y1, x0:x1], data_range).mean().item()
'''

RECON_EVAL = '''
import argparse, json, time
from pathlib import Path

import h5py
import torch

from utils.common.metrics import SSIM, foreground_mask, ssim_bbox, ssim_full
from utils.common.utils import save_reconstructions
from utils.learning.test_part import INPUT_KIND, load_model, prep_volume, recon_slice

WARMUP = 5


def run(model, ssim, device, acc_dir, save_dir):
    full, boxes, times, out = [], [], [], {}
    for image_path in sorted((acc_dir / "image").iterdir()):
        kspace_path = acc_dir / "kspace" / image_path.name
        with h5py.File(image_path, "r") as hf:
            targets, maximum = hf["image_label"][:], hf.attrs["max"]
            annotations = json.loads(hf.attrs.get("annotations", "{}"))
        ctx = prep_volume(image_path, kspace_path if kspace_path.exists() else None, device)
        n = ctx["num_slices"]
        with torch.no_grad():
            for s in range(min(WARMUP, n)):
                recon_slice(model, ctx, s)
            volume = []
            for s in range(n):
                start = time.perf_counter()
                image = recon_slice(model, ctx, s)
                times.append(time.perf_counter() - start)
                assert image.shape == targets.shape[1:] and image.dtype == torch.float32 and image.device == device
                volume.append(image)
        for s in range(n):
            target = torch.from_numpy(targets[s]).to(device)
            mask = torch.from_numpy(foreground_mask(targets[s])).to(device).float()
            value = ssim_full(ssim, volume[s], target, mask, maximum)
            if value is not None:
                full.append(value)
            for box in annotations.get(str(s), []):
                value = ssim_bbox(ssim, volume[s], target, box, maximum)
                if value is not None:
                    boxes.append(value)
        out[image_path.name] = torch.stack(volume).cpu().numpy()
    save_reconstructions(out, save_dir)
    return (sum(full) / len(full) if full else 0.0), (sum(boxes) / len(boxes) if boxes else 0.0), 1000 * sum(times) / len(times)


parser = argparse.ArgumentParser()
parser.add_argument("-n", "--net_name", type=Path, default="test_varnet")
parser.add_argument("-p", "--path_data", type=Path, default="/Data/leaderboard/")
parser.add_argument("-g", "--GPU_NUM", type=int, default=0)
args = parser.parse_args()
args.exp_dir = "../result" / args.net_name / "checkpoints"
device = torch.device(f"cuda:{args.GPU_NUM}" if torch.cuda.is_available() else "cpu")
model = load_model(args, device)
ssim = SSIM().to(device=device)
base = "../result" / args.net_name / "reconstructions_leaderboard"
full4, bbox4, ms4 = run(model, ssim, device, args.path_data / "acc4", base / "acc4")
full8, bbox8, ms8 = run(model, ssim, device, args.path_data / "acc8", base / "acc8")
print("Leaderboard SSIM_full : {:.4f}".format((full4 + full8) / 2))
print("Leaderboard SSIM_bbox : {:.4f}".format((bbox4 + bbox8) / 2))
print("exact: {!r} {!r} {!r} {!r} {:.1f}".format(full4, full8, bbox4, bbox8, (ms4 + ms8) / 2))
'''


def install(repo: Path, copy: Path) -> Path:
    """A copy of ``repo``'s code in ``copy``, with the stand-in harness files placed where the organisers put theirs."""
    ignore = shutil.ignore_patterns("__pycache__")
    for name in ("utils", "configs"):
        shutil.copytree(repo / name, copy / name, ignore=ignore)
    (copy / "utils" / "common" / "metrics.py").write_text(METRICS.lstrip())
    (copy / "recon_eval.py").write_text(RECON_EVAL.lstrip())
    return copy
