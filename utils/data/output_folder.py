"""A folder of h5 files that a tool writes: refusing foreign data, resuming, running volumes in parallel.

The synthetic generator and the fastMRI converter record what they write in a manifest (a small JSON file
named after the tool). Running again with the same manifest resumes: finished files are kept, and the hidden
``.<name>.<pid>.tmp`` files of writes that were cut short are dropped. A different manifest is refused unless
``overwrite``; a folder that holds .h5 files but no manifest of this tool (the real challenge data, the
output of another tool, fastMRI files) is always refused, so it is never touched.

Jobs run one at a time or in ``workers`` spawned processes, each with one torch and one BLAS thread, so a
job's output is bit-identical for any number of workers (and OpenBLAS's threaded path ran GRAPPA's small
least-squares fits ~70x slower on a busy 2-core machine).
"""
from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from utils.atomic import atomic_path
from utils.errors import UserInputError

__all__ = ["claim_folder", "remove_unplanned", "remove_temporaries", "run_jobs"]


def _describe_difference(existing: dict, manifest: dict) -> str:
    """The settings that differ, briefly: ``seed 1 (now 430)``; long values are only named."""
    parts = []
    for key in sorted(set(existing) | set(manifest)):
        old, new = existing.get(key), manifest.get(key)
        if old == new:
            continue
        if len(repr(old)) + len(repr(new)) <= 80:
            parts.append(f"{key} {old!r} (now {new!r})")
        else:
            parts.append(f"other {key}")
    return ", ".join(parts)


def claim_folder(out: Path, manifest_name: str, manifest: dict, overwrite: bool, tool: str) -> None:
    """Check that ``tool`` may write ``out`` with ``manifest``, then record the manifest there.

    Raises UserInputError naming ``out`` when it holds ``tool``'s data made with another manifest (unless
    ``overwrite``), or .h5 files without ``tool``'s manifest (always), or cannot be created.
    """
    path = out / manifest_name
    if path.is_file():
        try:
            existing = json.loads(path.read_text())
        except json.JSONDecodeError:
            existing = {}
        if existing != manifest and not overwrite:
            raise UserInputError(
                f"{out}: already holds data that the {tool} made with other settings "
                f"({_describe_difference(existing, manifest)}); pass --overwrite to replace it"
            )
    elif any(out.rglob("*.h5")):  # the real challenge data has the same names: never overwrite it
        raise UserInputError(f"{out}: already holds .h5 files that the {tool} did not write; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:
            temporary.write_text(json.dumps(manifest) + "\n")
    except OSError as err:
        raise UserInputError(f"{out}: cannot create the data folders ({err.strerror})") from None


def remove_unplanned(out: Path, planned: Iterable[Path]) -> None:
    """On --overwrite, drop .h5 files of the previous run that this one does not write (no mixed datasets)."""
    keep = set(planned)
    for path in out.rglob("*.h5"):
        if path not in keep:
            path.unlink()


def remove_temporaries(planned: Iterable[Path]) -> None:
    """Drop the temporary files that atomic writes of ``planned`` files left when a run was killed."""
    by_folder: dict[Path, set[str]] = {}
    for path in planned:
        by_folder.setdefault(path.parent, set()).add(path.name)
    for folder, names in by_folder.items():
        for temporary in folder.glob(".*.tmp"):
            if temporary.name[1:].rsplit(".", 2)[0] in names:  # ".<name>.<pid>.tmp"
                temporary.unlink(missing_ok=True)


def _single_threaded(call: tuple[Callable[[Any], Any], Any]) -> Any:
    function, argument = call
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            return function(argument)
    finally:
        torch.set_num_threads(threads)


def run_jobs(function: Callable[[Any], Any], arguments: Sequence[Any], workers: int, bar: tqdm) -> None:
    """``function(argument)`` for every argument, in ``workers`` processes; ``bar`` advances per job.

    ``function`` must be a module-level function (it is pickled for the worker processes). An exception
    in a job stops the run and is raised here.
    """
    calls = [(function, argument) for argument in arguments]
    if workers <= 1 or len(calls) <= 1:
        for call in calls:
            _single_threaded(call)
            bar.update()
        return
    context = multiprocessing.get_context("spawn")  # fork after torch has run threads is unsafe
    with context.Pool(min(workers, os.cpu_count() or 1, len(calls))) as pool:
        for _ in pool.imap_unordered(_single_threaded, calls):
            bar.update()
