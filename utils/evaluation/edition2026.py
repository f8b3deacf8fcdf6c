"""The SNU FastMRI 2026 leaderboard score: SSIM_full and SSIM_bbox, as the organisers' script computes them.

For every image file of ``<leaderboard>/acc{4,8}/image`` (any file name: the 2026 names are not fixed) and the
reconstruction of the same name:

- the foreground mask of each target slice uses one threshold, ``> 2e-5`` (the 2026 data are knee), then the
  leaderboard's erode 1 / dilate 15 / erode 14 (:mod:`utils.metrics.foreground`);
- SSIM_full of a slice is the 7x7 SSIM map of (reconstruction x mask, target x mask), data_range = the volume's
  ``max``, averaged over the mask cropped to the map (a slice with an empty mask is skipped);
- SSIM_bbox of a lesion box (``attrs['annotations']``, :mod:`utils.data.annotations`) is the mean SSIM map of
  the unmasked reconstruction and target cropped to the box, clipped to the image; boxes under 7 pixels are
  skipped;
- per acceleration, SSIM_full is the mean over slices and SSIM_bbox the mean over boxes; both are averaged over
  acc4 and acc8 and the Total adds the speed tiebreak (:func:`utils.metrics.score.edition_2026`).

On the CPU only the windows that touch a slice's foreground are computed (the others are outside the mask and
do not count), with OpenCV's float64 box filter, as the 2025 scorer does; on CUDA the batched torch SSIM. Each
slice also gets fastMRI's PSNR and NMSE of its volume (:mod:`utils.metrics.volume`).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from utils.data.annotations import Box, read_annotations, scored_boxes
from utils.data.layout import ACCELERATIONS, volume_labels
from utils.errors import UserInputError
from utils.evaluation.inputs import check_reconstructions
from utils.evaluation.leaderboard import DEFAULT_KEY, on_cpu, read_pair, score_pairs, ssim_full_cpu
from utils.metrics.foreground import MASK_ANATOMY_2026, foreground_mask
from utils.metrics.score import SliceScore
from utils.metrics.ssim_moments import K1, K2, box_moments, ssim_from_moments

if TYPE_CHECKING:
    import torch

__all__ = ["box_ssim_cpu", "score_volume_2026", "score_leaderboard_2026"]



def box_ssim_cpu(reconstruction: np.ndarray, target: np.ndarray, box: Box, max_value: float) -> float:
    """Mean SSIM map of the (unmasked) ``box`` crops of two (H, W) slices; ``box`` already clipped.

    In float64 throughout: on a small crop float32's cancellation in the variances moves the mean by up to 5e-6
    (the official float32 convolution's own error), and the crops are cheap.
    """
    crop = (slice(box.y, box.y + box.height), slice(box.x, box.x + box.width))
    x, y = (np.ascontiguousarray(image[crop], dtype=np.float64) for image in (reconstruction, target))
    ssim = ssim_from_moments(*box_moments(x, y), (K1 * max_value) ** 2, (K2 * max_value) ** 2)
    return float(ssim.mean())


def _volume_cpu(reconstruction, target, max_value, boxes_by_slice) -> list[tuple[float, tuple[float, ...]]]:
    scores = []
    for index, (recon_slice, target_slice) in enumerate(zip(reconstruction, target)):
        full = ssim_full_cpu(recon_slice, target_slice, foreground_mask(target_slice, MASK_ANATOMY_2026, np.uint8), max_value)
        boxes = scored_boxes(boxes_by_slice.get(index, []), target_slice.shape)
        scores.append((full, tuple(box_ssim_cpu(recon_slice, target_slice, box, max_value) for box in boxes)))
    return scores


def _volume_torch(reconstruction, target, max_value, boxes_by_slice, device) -> list[tuple[float, tuple[float, ...]]]:
    import torch  # only here: scoring on the CPU never imports torch

    from utils.metrics.ssim import leaderboard_ssim_map, masked_mean, ssim_map

    recon_t, target_t = torch.from_numpy(reconstruction).to(device), torch.from_numpy(target).to(device)
    mask_t = torch.from_numpy(foreground_mask(target, MASK_ANATOMY_2026)).to(device)
    with torch.no_grad():
        full = masked_mean(leaderboard_ssim_map(recon_t, target_t, mask_t, max_value), mask_t).double().cpu().tolist()
        scores = []
        for index in range(len(target)):
            boxes = scored_boxes(boxes_by_slice.get(index, []), target.shape[1:])
            crops = [(slice(b.y, b.y + b.height), slice(b.x, b.x + b.width)) for b in boxes]
            box_values = tuple(float(ssim_map(recon_t[index][c].double(), target_t[index][c].double(), max_value).mean()) for c in crops)
            scores.append((full[index], box_values))
    return scores


def score_volume_2026(
    reconstruction: np.ndarray, target: np.ndarray, max_value: float, boxes_by_slice: dict[int, list[Box]],
    device: str | torch.device = "cpu",
) -> list[tuple[float, tuple[float, ...]]]:
    """(SSIM_full, SSIM of each scored box) of every slice of one volume.

    Args:
        reconstruction, target: (S, 384, 384) float32; max_value: the volume's ``max`` (data_range).
        boxes_by_slice: the file's boxes by slice (:func:`utils.data.annotations.read_annotations`).
    Returns:
        one ``(ssim_full, box_ssims)`` per slice; ssim_full NaN where the foreground is empty.
    """
    reconstruction = np.ascontiguousarray(reconstruction, dtype=np.float32)
    target = np.ascontiguousarray(target, dtype=np.float32)
    if on_cpu(device):
        return _volume_cpu(reconstruction, target, max_value, boxes_by_slice)
    return _volume_torch(reconstruction, target, max_value, boxes_by_slice, device)


def _score_pair(pair: tuple[Path, Path], acceleration: int, key: str, device) -> list[SliceScore] | str:
    """2026 scores of one checked (target, reconstruction) pair, or the name of a non-finite reconstruction."""
    read = read_pair(pair, key)
    if isinstance(read, str):
        return read
    target, max_value, reconstruction, (volume_psnr, volume_nmse) = read
    boxes = read_annotations(pair[0])
    anatomy, _ = volume_labels(pair[0])
    return [
        SliceScore(acceleration, anatomy, pair[0].name, index, ssim_full=full, box_ssims=box_values, psnr=volume_psnr, nmse=volume_nmse)
        for index, (full, box_values) in enumerate(score_volume_2026(reconstruction, target, max_value, boxes, device))
    ]


def score_leaderboard_2026(
    leaderboard_root: str | Path, recon_root: str | Path, key: str = DEFAULT_KEY, device: str | torch.device = "cpu",
    progress: bool = True,
) -> list[SliceScore]:
    """2026 scores of ``recon_root/acc{4,8}/*.h5`` against ``leaderboard_root/acc{4,8}/image/*.h5``, every
    folder checked before anything is scored (missing or extra files, keys, shapes: one error)."""
    leaderboard_root, recon_root = Path(leaderboard_root), Path(recon_root)
    checked = []
    for acceleration in ACCELERATIONS:
        target_dir = leaderboard_root / f"acc{acceleration}" / "image"
        if not target_dir.is_dir():
            raise UserInputError(f"{target_dir}: leaderboard target folder not found")
        recon_dir = recon_root / f"acc{acceleration}"
        checked.append((acceleration, recon_dir, check_reconstructions(target_dir, recon_dir, key)))
    return [score for acceleration, recon_dir, pairs in checked
            for score in score_pairs(pairs, recon_dir, lambda pair, acc=acceleration: _score_pair(pair, acc, key, device), device, progress)]
