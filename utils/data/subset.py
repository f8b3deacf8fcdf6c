"""Part of the data for an expert: one anatomy, one acceleration or both (``data.subset``).

    python3 final_main.py --config-name=demo data.subset.anatomy=brain data.subset.acceleration=4

Training examples, with ``acceleration`` set, are every slice of the anatomy's files **at that acceleration**:
a file named with it keeps its own mask, a file of the other acceleration gets the challenge-style
equispaced mask at it (the mask duplication of :mod:`utils.data.dataset`, restricted to one acceleration).
The acc4 and acc8 files are different fully sampled scans, so an acc4 expert trains on twice the slices of
the acc4 files alone; ``include_other_acceleration: false`` keeps only the files named with it. Mask
augmentation then draws its masks at that acceleration too. Without ``acceleration`` the configured
duplication (``augment.duplicate_accelerations``) applies unchanged.

Validation reads only the files of the anatomy and acceleration, with their own masks: the volumes a
router sends to the expert at inference, under their real masks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from utils.data.layout import ACCELERATIONS, ANATOMIES, VolumeName
from utils.errors import UserInputError

__all__ = ["DataSubset", "VolumeSelection"]


@dataclass(frozen=True)
class VolumeSelection:
    """Keeps the volumes whose name has one of ``anatomies`` and one of ``accelerations``."""

    anatomies: tuple[str, ...]
    accelerations: tuple[int, ...]

    def __call__(self, name: VolumeName) -> bool:
        return name.anatomy in self.anatomies and name.acceleration in self.accelerations

    def __str__(self) -> str:
        return f"{' and '.join(self.anatomies)} files at {' and '.join(f'acc{a}' for a in self.accelerations)}"


@dataclass(frozen=True)
class DataSubset:
    """``data.subset``: ``anatomy`` (brain, knee or None: both), ``acceleration`` (4, 8 or None: both)."""

    anatomy: str | None = None
    acceleration: int | None = None
    include_other_acceleration: bool = True

    @classmethod
    def from_config(cls, node: Mapping[str, Any] | None) -> "DataSubset":
        """The subset of a config node (None or missing keys: everything); a bad value names its key."""
        node = dict(node or {})
        unknown = sorted(set(node) - {"anatomy", "acceleration", "include_other_acceleration"})
        if unknown:
            raise UserInputError(f"config key data.subset.{unknown[0]} is unknown: expected anatomy, acceleration, include_other_acceleration")
        anatomy, acceleration = node.get("anatomy"), node.get("acceleration")
        include_other = node.get("include_other_acceleration", True)
        if anatomy is not None and anatomy not in ANATOMIES:
            raise UserInputError(f"config value data.subset.anatomy={anatomy!r} is invalid: expected {' or '.join(ANATOMIES)} or null")
        if acceleration is not None and (isinstance(acceleration, bool) or acceleration not in ACCELERATIONS):
            raise UserInputError(f"config value data.subset.acceleration={acceleration!r} is invalid: expected "
                                 f"{' or '.join(map(str, ACCELERATIONS))} or null")
        if not isinstance(include_other, bool):
            raise UserInputError(f"config value data.subset.include_other_acceleration={include_other!r} is invalid: expected true or false")
        return cls(anatomy, acceleration, include_other)

    @property
    def anatomies(self) -> tuple[str, ...]:
        return ANATOMIES if self.anatomy is None else (self.anatomy,)

    @property
    def accelerations(self) -> tuple[int, ...]:
        return ACCELERATIONS if self.acceleration is None else (self.acceleration,)

    @property
    def label(self) -> str:
        """``brain_acc4``, ``brain``, ``acc4`` or ``all``: the route names of the expert manifests."""
        parts = ([self.anatomy] if self.anatomy else []) + ([f"acc{self.acceleration}"] if self.acceleration else [])
        return "_".join(parts) or "all"

    def covers(self, anatomy: str, acceleration: int) -> bool:
        """Whether this subset trained on volumes of ``anatomy`` at ``acceleration``."""
        return anatomy in self.anatomies and acceleration in self.accelerations

    def train_selection(self) -> VolumeSelection | None:
        """The training files (None: all)."""
        if self.anatomy is None and (self.acceleration is None or self.include_other_acceleration):
            return None
        accelerations = ACCELERATIONS if self.include_other_acceleration else self.accelerations
        return VolumeSelection(self.anatomies, accelerations)

    def train_accelerations(self, duplicate: Sequence[int] | None) -> list[int] | None:
        """The ``accelerations`` of the training :class:`SliceDataset` (None: each file's own mask)."""
        if self.acceleration is not None:
            return [self.acceleration]
        return list(duplicate) if duplicate else None

    def val_selection(self) -> VolumeSelection | None:
        """The validation files (None: all): exactly the subset's anatomy and acceleration."""
        if self.anatomy is None and self.acceleration is None:
            return None
        return VolumeSelection(self.anatomies, self.accelerations)
