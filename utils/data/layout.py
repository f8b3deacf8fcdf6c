"""Names and folders of the challenge data (SPEC §1), in one place.

    <root>/train/{image,kspace}/{brain,knee}_acc{4,8}_{n}.h5
    <root>/val/{image,kspace}/...
    <root>/leaderboard/acc{4,8}/{image,kspace}/{brain,knee}_test{i}.h5     (no underscore before i)

Anatomy and acceleration are read from these names (a leaderboard file takes its acceleration from its
``acc{R}`` folder). A file that does not follow them is an error, so a stray file is noticed, not skipped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from utils.errors import UserInputError, file_error

__all__ = [
    "ANATOMIES",
    "ACCELERATIONS",
    "VolumeName",
    "parse_volume_name",
    "volume_labels",
    "volume_filename",
    "leaderboard_filename",
    "list_volumes",
]

ANATOMIES = ("brain", "knee")
ACCELERATIONS = (4, 8)

_TRAIN = re.compile(r"^(?P<anatomy>brain|knee)_acc(?P<acc>\d+)_(?P<index>\d+)\.h5$")
_LEADERBOARD = re.compile(r"^(?P<anatomy>brain|knee)_test(?P<index>\d+)\.h5$")
_ACC_FOLDER = re.compile(r"^acc(?P<acc>\d+)$")


@dataclass(frozen=True)
class VolumeName:
    """What a file name says: anatomy, acceleration, volume index, and whether it is a leaderboard file."""

    anatomy: str
    acceleration: int
    index: int
    leaderboard: bool


def volume_filename(anatomy: str, acceleration: int, index: int) -> str:
    """Train/val file name, e.g. ``brain_acc4_12.h5``."""
    return f"{anatomy}_acc{acceleration}_{index}.h5"


def leaderboard_filename(anatomy: str, index: int) -> str:
    """Leaderboard file name, e.g. ``knee_test7.h5``."""
    return f"{anatomy}_test{index}.h5"


def _folder_acceleration(path: Path) -> int | None:
    """Acceleration of a leaderboard file from its ``acc{R}/{image,kspace}/`` folder, if it has one."""
    for folder in (path.parent, path.parent.parent):
        match = _ACC_FOLDER.match(folder.name)
        if match:
            return int(match["acc"])
    return None


def parse_volume_name(path: str | Path) -> VolumeName:
    """Parse a challenge file name; raises UserInputError naming the file if it follows neither pattern."""
    path = Path(path)
    match = _TRAIN.match(path.name)
    if match:
        return VolumeName(match["anatomy"], int(match["acc"]), int(match["index"]), leaderboard=False)
    match = _LEADERBOARD.match(path.name)
    if match:
        acceleration = _folder_acceleration(path)
        if acceleration is None:
            raise file_error(path, "a leaderboard file must sit under an acc{R}/ folder that gives its acceleration")
        return VolumeName(match["anatomy"], acceleration, int(match["index"]), leaderboard=True)
    raise file_error(
        path,
        "the name is not a challenge file name ({brain,knee}_acc{R}_{n}.h5 or {brain,knee}_test{i}.h5)",
    )


def volume_labels(path: str | Path) -> tuple[str, int]:
    """(anatomy, acceleration) of a file that need not have a challenge name (the 2026 leaderboard's names are
    not fixed): what the name says, else ``("unknown", R)`` with R from an ``acc{R}`` folder (0 without one)."""
    try:
        name = parse_volume_name(path)
    except UserInputError:
        return "unknown", _folder_acceleration(Path(path)) or 0
    return name.anatomy, name.acceleration


def _natural_key(path: Path) -> tuple:
    """Sort brain_test2 before brain_test10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name))


def list_volumes(folder: str | Path) -> list[Path]:
    """The .h5 files of ``folder`` in natural order; raises UserInputError if the folder is missing or empty."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserInputError(f"{folder}: data folder not found")
    files = sorted(folder.glob("*.h5"), key=_natural_key)
    if not files:
        raise UserInputError(f"{folder}: the folder holds no .h5 files")
    return files
