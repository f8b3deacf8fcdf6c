"""Ctrl-C (SIGINT) and SIGTERM (preemption, ``kill``) as a request to stop at the next safe point.

Inside :class:`StopOnSignal` the first signal only sets a flag; the training loop checks it between batches,
saves a resumable checkpoint and exits cleanly. A second signal while saving is ignored, so the checkpoint
that is being written is not cut short (writes are atomic anyway).
"""
from __future__ import annotations

import signal
from types import FrameType

__all__ = ["Interrupted", "StopOnSignal"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """Raised by the loop at a safe point after a stop signal; carries the signal number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopOnSignal:
    """Context manager: records SIGINT/SIGTERM instead of dying, restores the old handlers on exit."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum

    def check(self) -> None:
        """Raise :class:`Interrupted` if a stop was requested."""
        if self.signum is not None:
            raise Interrupted(self.signum)

    def __enter__(self) -> "StopOnSignal":
        for signum in _SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread (e.g. a test harness): signals stay as they were
                pass
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
