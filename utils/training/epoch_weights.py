"""Per-epoch weights (``training.keep_epoch_weights: N``): ``checkpoints/epoch{E}.pt`` of the last N epochs.

Each file is a checkpoint of this repository holding only what reconstruction and averaging need: the raw
(optimised, not EMA) weights at the end of epoch ``E`` (0-based, as in the logs), the model config, the run
config and the step count; ``python -m utils.tools.average_checkpoints`` averages the last ones.

Rotation is crash-safe: the new file is written atomically before any old one is removed, so an interruption
leaves at most one file too many (removed at the next epoch), never a missing or half-written one. The
trainer writes epoch ``E``'s file before ``model.pt`` records that epoch as done, so a run killed in between
trains the epoch again, exactly, and writes the same file. Files of epochs after ``E`` can only be left over
from an earlier run in the same folder (``training.overwrite=true``); they are removed too, and a fresh run
removes every old one before its first step (:func:`remove_epoch_weights`).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from utils.training.checkpoint_policy import DiskSpaceGuard, write_checkpoints

__all__ = ["epoch_path", "epoch_files", "write_epoch_weights", "remove_epoch_weights"]

log = logging.getLogger("train")
_NAME = re.compile(r"epoch(\d+)\.pt")


def epoch_path(checkpoint_dir: Path, epoch: int) -> Path:
    return Path(checkpoint_dir) / f"epoch{epoch}.pt"


def epoch_files(checkpoint_dir: Path) -> dict[int, Path]:
    """``{epoch: path}`` of the per-epoch weight files in ``checkpoint_dir``, oldest first."""
    found = {}
    for path in Path(checkpoint_dir).glob("epoch*.pt"):
        match = _NAME.fullmatch(path.name)
        if match and path.is_file():
            found[int(match[1])] = path
    return dict(sorted(found.items()))


def write_epoch_weights(checkpoint_dir: Path, epoch: int, checkpoint: dict[str, Any], keep: int, guard: DiskSpaceGuard) -> list[Path]:
    """Write ``epoch{epoch}.pt``, then remove the files outside the last ``keep`` epochs; returns what was written."""
    written = write_checkpoints([epoch_path(checkpoint_dir, epoch)], checkpoint, guard)
    for number, path in epoch_files(checkpoint_dir).items():
        if number <= epoch - keep or number > epoch:
            path.unlink(missing_ok=True)
    return written


def remove_epoch_weights(checkpoint_dir: Path) -> None:
    """Remove every per-epoch weight file: a fresh run must never average an overwritten run's weights."""
    stale = epoch_files(checkpoint_dir)
    for path in stale.values():
        path.unlink(missing_ok=True)
    if stale:
        log.info("removed %d per-epoch weight file(s) of the run this one replaces (%s)", len(stale),
                 ", ".join(path.name for path in stale.values()))
