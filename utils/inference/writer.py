"""Collect per-slice outputs into volumes and write each volume once it is complete.

Output files follow the leaderboard format: ``<out_dir>/<fname>`` holding ``reconstruction`` (S, 384, 384)
float32, written atomically, so a scorer never sees a half-written volume.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from utils.atomic import atomic_path
from utils.errors import UserInputError

__all__ = ["ReconstructionWriter"]


class ReconstructionWriter:
    """Accumulates slices of each file and writes the file when its last slice arrives.

    Args:
        out_dir: folder for the volumes (created).
        num_slices: slices expected per file name.
        key: h5 dataset name ('reconstruction' for the leaderboard).
    """

    def __init__(self, out_dir: str | Path, num_slices: dict[str, int], key: str = "reconstruction"):
        self.out_dir = Path(out_dir)
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserInputError(f"{self.out_dir}: cannot create the output folder ({err.strerror})") from None
        self.num_slices, self.key = num_slices, key
        self._pending: dict[str, dict[int, np.ndarray]] = {}
        self.written: list[Path] = []

    def add(self, fname: str, slice_idx: int, image: np.ndarray) -> None:
        """Store one (384, 384) slice; writes ``fname`` when all its slices are in."""
        slices = self._pending.setdefault(fname, {})
        slices[slice_idx] = np.asarray(image, dtype=np.float32)
        if len(slices) == self.num_slices[fname]:
            volume = np.stack([slices[index] for index in range(self.num_slices[fname])])
            path = self.out_dir / fname
            try:
                with atomic_path(path) as temporary, h5py.File(temporary, "w") as handle:
                    handle.create_dataset(self.key, data=volume)
            except OSError as err:
                raise UserInputError(f"{path}: cannot write the reconstruction ({err})") from None
            self.written.append(path)
            del self._pending[fname]

    def close(self) -> None:
        """Check that every started volume was completed (a missing slice is a bug, not a user error)."""
        if self._pending:
            raise RuntimeError(f"incomplete volumes were never written: {sorted(self._pending)}")
