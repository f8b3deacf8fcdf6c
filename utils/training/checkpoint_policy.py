"""When and whether the trainer writes a checkpoint: every M minutes of wall time, and only with room on disk.

- :class:`CheckpointTimer` (``training.checkpoint_every_minutes``): due once M minutes have passed since the
  last save of any kind. Under DDP the trainer asks every rank's timer and saves when any is due, so the
  decision is collective; a preemption then loses at most M minutes (plus the step in progress). Periodic
  checkpoints rewrite ``model.pt`` atomically, like ``training.checkpoint_every_steps``: nothing piles up.
- :class:`DiskSpaceGuard`: before each file is written, the free space of its file system must exceed the size
  of the last checkpoint (``model.pt``; before the first one, the tensors to be saved) by 10 %, plus
  ``training.disk_reserve_gb``. Otherwise the previous checkpoint is kept, a warning says so once, and saves
  resume by themselves when space is freed. Writes are atomic anyway (temporary file, then rename), so a disk
  that fills up during a write still leaves the previous file intact, but that write is then an error.
"""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import torch

from utils.errors import file_error
from utils.model.checkpoint import save_checkpoint

__all__ = ["CheckpointTimer", "DiskSpaceGuard", "checkpoint_bytes", "write_checkpoints"]

log = logging.getLogger("train")
GB = 1024**3
SIZE_MARGIN = 1.1  # a checkpoint grows a little between saves (the step loss log); zip headers


class CheckpointTimer:
    """Due every ``minutes`` of wall time since :meth:`reset` (never when ``minutes`` is 0)."""

    def __init__(self, minutes: float, clock: Callable[[], float] = time.monotonic):
        self.interval_s = 60.0 * minutes
        self.clock = clock
        self.last = clock()

    @property
    def enabled(self) -> bool:
        return self.interval_s > 0

    def due(self) -> bool:
        return self.enabled and self.clock() - self.last >= self.interval_s

    def reset(self) -> None:
        self.last = self.clock()


def checkpoint_bytes(checkpoint: Any) -> int:
    """The bytes of all tensors in a (nested) checkpoint dict: what ``torch.save`` will write, roughly."""
    if isinstance(checkpoint, torch.Tensor):
        return checkpoint.numel() * checkpoint.element_size()
    if isinstance(checkpoint, dict):
        return sum(checkpoint_bytes(value) for value in checkpoint.values())
    if isinstance(checkpoint, (list, tuple)):
        return sum(checkpoint_bytes(value) for value in checkpoint)
    return 0


class DiskSpaceGuard:
    """Decides whether a checkpoint fits on its disk; warns once per shortage."""

    def __init__(self, reserve_gb: float = 0.0, disk_usage: Callable[[Path], Any] = shutil.disk_usage):
        self.reserve_bytes = int(reserve_gb * GB)
        self.disk_usage = disk_usage
        self.short = False  # a shortage was reported and has not ended

    def room_for(self, path: Path, last_checkpoint: Path, estimate: int) -> bool:
        """True if ``path`` can be written: free space > size of ``last_checkpoint`` (else ``estimate``)
        x 1.1 + the reserve."""
        size = last_checkpoint.stat().st_size if last_checkpoint.is_file() else estimate
        needed = int(size * SIZE_MARGIN) + self.reserve_bytes
        free = self.disk_usage(path.parent).free
        if free >= needed:
            if self.short:
                log.info("%.2f GB free again under %s: checkpoints are written again", free / GB, path.parent)
            self.short = False
            return True
        if not self.short:
            log.warning("only %.2f GB free under %s, a checkpoint needs %.2f GB (training.disk_reserve_gb=%g included): "
                        "keeping the previous checkpoint and skipping saves until space is freed",
                        free / GB, path.parent, needed / GB, self.reserve_bytes / GB)
        self.short = True
        return False


def _describe(err: Exception) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def write_checkpoints(paths: list[Path], checkpoint: dict[str, Any], guard: DiskSpaceGuard) -> list[Path]:
    """Write ``checkpoint`` to each of ``paths`` that fits on disk; returns those written.

    A failed write (a full disk, a read-only folder) is a UserInputError naming the file; the previous file
    at that path is intact.
    """
    estimate = checkpoint_bytes(checkpoint)
    written = []
    for path in paths:
        if not guard.room_for(path, path.parent / "model.pt", estimate):
            continue
        try:
            save_checkpoint(path, checkpoint)
        except (OSError, RuntimeError) as err:  # torch.save reports a failed write as a RuntimeError
            raise file_error(path, f"could not be written ({_describe(err)}); the previous checkpoint, if any, is intact") from err
        written.append(path)
    return written
