"""Checks of a reconstruction folder against its targets, before anything is scored.

Missing or extra files, a missing key, a group in place of a dataset, a wrong shape and an unreadable file are
all listed in one :class:`~utils.errors.UserInputError`, so a user fixes everything at once; ``--strict``
demands the official file names.
"""
from __future__ import annotations

from pathlib import Path

import h5py

from utils.data.h5 import READ_ERRORS, open_h5, require_attr, require_dataset
from utils.data.layout import ANATOMIES, leaderboard_filename, list_volumes
from utils.errors import UserInputError

__all__ = ["OFFICIAL_FILES_PER_ACCELERATION", "check_reconstructions", "check_official_names"]

OFFICIAL_FILES_PER_ACCELERATION = 58


def _reconstruction_problem(path: Path, key: str, target_shape: tuple[int, ...]) -> str | None:
    """What is wrong with one reconstruction file, in a phrase; None if nothing (its values are read later)."""
    try:
        with h5py.File(path, "r") as recon_file:
            if key not in recon_file:
                return f"has no key '{key}' (keys: {sorted(recon_file.keys())})"
            dataset = recon_file[key]
            if not isinstance(dataset, h5py.Dataset):
                return f"holds a group, not a dataset, under '{key}'"
            if dataset.dtype.kind not in "fiu":
                return f"has dtype {dataset.dtype} under '{key}', expected real numbers"
            if dataset.shape != target_shape:
                return f"has shape {dataset.shape} but its target has {target_shape}"
    except READ_ERRORS:
        return "cannot be read as HDF5 (truncated or corrupt?)"
    return None


def check_reconstructions(target_dir: Path, recon_dir: Path, key: str) -> list[tuple[Path, Path]]:
    """Pair every target file with its reconstruction; one UserInputError lists everything that is wrong."""
    targets = {p.name: p for p in list_volumes(target_dir)}
    if not recon_dir.is_dir():
        raise UserInputError(f"{recon_dir}: reconstruction folder not found")
    recons = {p.name: p for p in recon_dir.glob("*.h5")}
    problems = []
    missing = sorted(set(targets) - set(recons))
    extra = sorted(set(recons) - set(targets))
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if extra:
        problems.append(f"extra {', '.join(extra)}")
    for name in sorted(set(targets) & set(recons)):
        with open_h5(targets[name]) as target_file:
            target_shape = require_dataset(target_file, "image_label", ndim=3, kind="real").shape
            require_attr(target_file, "max")
        problem = _reconstruction_problem(recons[name], key, target_shape)
        if problem:
            problems.append(f"{name} {problem}")
    if problems:
        raise UserInputError(f"{recon_dir}: reconstructions do not match the targets in {target_dir}: {'; '.join(problems)}")
    return [(targets[name], recons[name]) for name in targets]


def check_official_names(target_dir: Path) -> None:
    """--strict: exactly brain_test1..29 and knee_test1..29, as the official script demands."""
    expected = {leaderboard_filename(a, i) for a in ANATOMIES for i in range(1, OFFICIAL_FILES_PER_ACCELERATION // 2 + 1)}
    present = {p.name for p in target_dir.glob("*.h5")}
    if present != expected:
        missing, extra = sorted(expected - present), sorted(present - expected)
        details = "; ".join(part for part in (f"missing {', '.join(missing)}" if missing else "", f"extra {', '.join(extra)}" if extra else "") if part)
        raise UserInputError(f"{target_dir}: --strict needs the official {OFFICIAL_FILES_PER_ACCELERATION} files: {details}")
