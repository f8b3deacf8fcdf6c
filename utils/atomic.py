"""Atomic file writes: write to a temporary file beside the target, then rename over it.

A crash, a kill or a full disk in the middle of a write leaves the previous file intact and at most a hidden
``.<name>.<pid>.tmp`` file behind, never a half-written checkpoint, log or reconstruction.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

__all__ = ["atomic_path", "save_npy"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` in one rename."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """``np.save`` through :func:`atomic_path` (no ``.npy`` suffix is appended)."""
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.save(handle, array)
