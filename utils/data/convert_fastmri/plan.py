"""Which challenge file each fastMRI volume becomes: split, acceleration, name and mask.

Per anatomy, the volumes (sorted by file name) are shuffled with ``default_rng([seed, anatomy])`` and cut in
order into train, val and leaderboard by the ``split`` weights (default 85 : 15 : 29, the challenge's
volumes per anatomy x acceleration); every split with a positive weight gets at least one volume when there
are enough. Within a split the shuffled volumes alternate acc4, acc8. Names follow the challenge (SPEC §1):
train ``{anatomy}_acc{R}_{n}.h5`` with n = 1..T per anatomy x acceleration, val with n = T+1.., leaderboard
``{anatomy}_test{i}.h5`` under ``acc{R}/``. Every volume appears exactly once, so no volume is in two splits.

The mask of a volume is drawn from ``default_rng([seed, crc32(file name)])``: the same for a seed whatever
else is converted with it. ``equispaced`` (the default) is the challenge's mask, as the synthetic generator
makes it: every R-th column from a random offset plus a centre block of ``center_fraction * W`` columns
(8 %: 26-39 lines for W = 320-480); the other mask types are the fastMRI families of
:mod:`utils.data.mask_types`.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from utils.data.convert_fastmri.sources import SourceVolume
from utils.data.layout import ACCELERATIONS, ANATOMIES, leaderboard_filename, volume_filename
from utils.data.mask_types import MASK_TYPES, sample_mask
from utils.data.masks import CENTER_FRACTION, equispaced_mask
from utils.errors import UserInputError

__all__ = ["SPLITS", "CHALLENGE_SPLIT", "MaskSpec", "ConvertJob", "split_counts", "plan_conversion"]

SPLITS = ("train", "val", "leaderboard")
CHALLENGE_SPLIT = (85.0, 15.0, 29.0)
_ANATOMY_CODES = {"brain": 0, "knee": 1}


@dataclass(frozen=True)
class MaskSpec:
    """The mask family of the converted volumes and the fraction of W in the centre block."""

    kind: str = "equispaced"
    center_fraction: float = CENTER_FRACTION

    def check(self) -> None:
        if self.kind not in MASK_TYPES:
            raise UserInputError(f"--mask-type {self.kind}: choose one of {', '.join(MASK_TYPES)}")
        if not 0.0 < self.center_fraction < 1.0 / max(ACCELERATIONS):
            raise UserInputError(f"--center-fraction {self.center_fraction}: must lie in (0, {1 / max(ACCELERATIONS)})")

    def draw(self, width: int, acceleration: int, rng: np.random.Generator) -> np.ndarray:
        """A (W,) float32 0/1 mask of this family."""
        if self.kind == "equispaced":
            offset = int(rng.integers(acceleration))
            return equispaced_mask(width, acceleration, round(self.center_fraction * width), offset)
        return sample_mask(self.kind, width, acceleration, self.center_fraction, rng)


@dataclass(frozen=True)
class ConvertJob:
    """One fastMRI volume and the challenge files it becomes."""

    source: SourceVolume
    split: str
    acceleration: int
    index: int
    kspace_path: Path
    image_path: Path

    @property
    def paths(self) -> tuple[Path, Path]:
        return (self.kspace_path, self.image_path)

    @property
    def done(self) -> bool:
        return self.kspace_path.is_file() and self.image_path.is_file()

    def mask(self, seed: int, spec: MaskSpec) -> np.ndarray:
        rng = np.random.default_rng([seed, zlib.crc32(self.source.path.name.encode())])
        return spec.draw(self.source.width, self.acceleration, rng)


def split_counts(total: int, weights: Sequence[float]) -> list[int]:
    """Volumes per split: proportional to ``weights`` (largest remainders), at least one per positive weight
    when ``total`` allows."""
    weights = [float(w) for w in weights]
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise UserInputError(f"--split {' '.join(f'{w:g}' for w in weights)}: give three non-negative weights, not all zero")
    quotas = [total * w / sum(weights) for w in weights]
    counts = [math.floor(q) for q in quotas]
    if total >= sum(w > 0 for w in weights):
        counts = [max(c, 1) if w > 0 else c for c, w in zip(counts, weights)]
    while sum(counts) > total:  # the minimum of one took volumes from the largest split
        largest = max(range(len(counts)), key=lambda i: counts[i])
        counts[largest] -= 1
    while sum(counts) < total:
        neediest = max(range(len(counts)), key=lambda i: (quotas[i] - counts[i], weights[i]))
        counts[neediest] += 1
    return counts


def plan_conversion(out: Path, sources: Sequence[SourceVolume], seed: int, weights: Sequence[float]) -> list[ConvertJob]:
    """The converted file of every source volume under ``out`` (see the module docstring)."""
    jobs = []
    for anatomy in ANATOMIES:
        volumes = sorted((s for s in sources if s.anatomy == anatomy), key=lambda s: s.path.name)
        order = np.random.default_rng([seed, _ANATOMY_CODES[anatomy]]).permutation(len(volumes))
        shuffled = [volumes[i] for i in order]
        counts = split_counts(len(volumes), weights)
        start = 0
        assigned: dict[str, list[tuple[SourceVolume, int]]] = {}
        for split, count in zip(SPLITS, counts):
            members = shuffled[start : start + count]
            assigned[split] = [(volume, ACCELERATIONS[i % len(ACCELERATIONS)]) for i, volume in enumerate(members)]
            start += count
        for acceleration in ACCELERATIONS:
            train = [volume for volume, acc in assigned["train"] if acc == acceleration]
            val = [volume for volume, acc in assigned["val"] if acc == acceleration]
            test = [volume for volume, acc in assigned["leaderboard"] if acc == acceleration]
            for split, members, first in (("train", train, 1), ("val", val, len(train) + 1)):
                for index, volume in enumerate(members, start=first):
                    name = volume_filename(anatomy, acceleration, index)
                    folder = out / split
                    jobs.append(ConvertJob(volume, split, acceleration, index, folder / "kspace" / name, folder / "image" / name))
            folder = out / "leaderboard" / f"acc{acceleration}"
            for index, volume in enumerate(test, start=1):
                name = leaderboard_filename(anatomy, index)
                paths = (folder / "kspace" / name, folder / "image" / name)
                jobs.append(ConvertJob(volume, "leaderboard", acceleration, index, *paths))
    return jobs
