"""Errors a user can cause, and the one way every script reports them.

A ``UserInputError`` says in one sentence which file (or config value) is wrong and how. Scripts run their
``main`` through :func:`run_cli`, which prints that sentence to stderr and exits with status 2 instead of a
traceback from deep inside h5py or torch. ``--debug`` on the command line (or ``MRI_DEBUG=1``) shows the
traceback as well. Command-line mistakes caught by :class:`ArgumentParser` are reported the same way.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, NoReturn, Sequence

__all__ = [
    "UserInputError",
    "file_error",
    "ArgumentParser",
    "debug_requested",
    "one_line",
    "report_and_exit",
    "run_cli",
    "EXIT_USER_ERROR",
]

EXIT_USER_ERROR = 2


class UserInputError(Exception):
    """A problem the user can fix: a path, a file, a key, a shape, a config value or a checkpoint."""


def file_error(path: str | os.PathLike, problem: str) -> UserInputError:
    """``UserInputError("<path>: <problem>")``: the file first, then what is wrong with it."""
    return UserInputError(f"{Path(path)}: {problem}")


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose mistakes (unknown flag, bad value) are a one-line UserInputError."""

    def error(self, message: str) -> NoReturn:
        raise UserInputError(f"{self.prog}: {message} (see --help)")


def debug_requested(argv: Sequence[str] = ()) -> bool:
    """``--debug`` among the arguments, or ``MRI_DEBUG`` set to anything but 0."""
    return "--debug" in argv or os.environ.get("MRI_DEBUG", "") not in ("", "0")


def one_line(err: UserInputError) -> str:
    """The error's sentence on one line.

    A UserInputError raised in a DataLoader worker is re-raised by torch with the worker's whole traceback as
    its message; its last line holds the original sentence.
    """
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return err.__class__.__name__
    if len(lines) == 1:
        return lines[0]
    last = lines[-1]
    for prefix in (f"{UserInputError.__module__}.{UserInputError.__name__}: ", f"{UserInputError.__name__}: "):
        if last.startswith(prefix):
            return last[len(prefix):]
    return " ".join(lines)


def report_and_exit(err: UserInputError) -> NoReturn:
    """Print ``error: <sentence>`` to stderr and exit with status 2."""
    print(f"error: {one_line(err)}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


def run_cli(main: Callable[[Sequence[str]], int | None], argv: Sequence[str] | None = None,
            checks: Sequence[Callable[[], None]] = ()) -> NoReturn:
    """Run ``main(argv)`` and exit: 0 on success, 2 with one line on stderr for a :class:`UserInputError`.

    ``checks`` run first (e.g. the torch floor, :func:`utils.gates.torch_floor.require_safe_torch`); a failing
    check is reported the same way.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        for check in checks:
            check()
        status = main(argv)
    except UserInputError as err:
        if debug_requested(argv):
            raise
        report_and_exit(err)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(status or 0)
