"""Errors a user can cause, and the one way every script reports them.

A ``UserInputError`` says in one sentence which file (or config value) is wrong and how. Scripts run their
``main`` through :func:`run_cli`, which prints that sentence to stderr and exits with status 2 instead of a
traceback from deep inside h5py or torch. ``--debug`` on the command line (or ``MRI_DEBUG=1``) shows the
traceback as well.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, NoReturn, Sequence

__all__ = ["UserInputError", "file_error", "run_cli", "EXIT_USER_ERROR"]

EXIT_USER_ERROR = 2


class UserInputError(Exception):
    """A problem the user can fix: a path, a file, a key, a shape, a config value or a checkpoint."""


def file_error(path: str | os.PathLike, problem: str) -> UserInputError:
    """``UserInputError("<path>: <problem>")``: the file first, then what is wrong with it."""
    return UserInputError(f"{Path(path)}: {problem}")


def _debug_requested(argv: Sequence[str]) -> bool:
    return "--debug" in argv or os.environ.get("MRI_DEBUG", "") not in ("", "0")


def run_cli(main: Callable[[Sequence[str]], int | None], argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``main(argv)`` and exit: 0 on success, 2 with one line on stderr for a :class:`UserInputError`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        status = main(argv)
    except UserInputError as err:
        if _debug_requested(argv):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(status or 0)
