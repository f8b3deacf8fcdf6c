"""The 2026 timing report: what ``reconstruct_from_ckpt.py`` measured, for the scorer's speed tiebreak.

``<reconstruction folder>/timing.json``, written atomically after a reconstruction::

    {"ms_per_slice": 412.3, "timed_slices": 1804, "warmup_slices": 5, "batch_size": 1, "device": "cuda:0",
     "ranks": 1, "convention": "..."}

``ms_per_slice`` is pure model time in the 2026 harness convention (after untimed warm-up slices, the device
synchronised around each forward pass). The tiebreak is defined at batch 1, the harness's setting; a report
measured at another batch size is used with a note.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from utils.atomic import atomic_path
from utils.errors import UserInputError, file_error

__all__ = ["TIMING_REPORT_NAME", "write_timing_report", "read_timing_report", "speed_for_tiebreak"]

TIMING_REPORT_NAME = "timing.json"
CONVENTION = "2026 harness: pure model time per slice after untimed warm-up slices, device synchronised around each call"


def write_timing_report(folder: str | Path, ms_per_slice: float, timed_slices: int, warmup_slices: int, batch_size: int,
                        device: str, ranks: int = 1) -> Path:
    """Write ``folder/timing.json`` (see the module docstring); returns its path."""
    path = Path(folder) / TIMING_REPORT_NAME
    report = {"ms_per_slice": ms_per_slice if math.isfinite(ms_per_slice) else None, "timed_slices": timed_slices,
              "warmup_slices": warmup_slices, "batch_size": batch_size, "device": device, "ranks": ranks, "convention": CONVENTION}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(report, indent=2) + "\n")
    return path


def read_timing_report(path: str | Path) -> dict[str, Any]:
    """The report at ``path``; a missing, unreadable or malformed file is one UserInputError naming it."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "timing report not found (reconstruct_from_ckpt.py writes one beside the reconstructions)")
    try:
        report = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise file_error(path, f"is not a readable JSON timing report ({type(err).__name__})") from None
    ms = report.get("ms_per_slice") if isinstance(report, dict) else None
    if ms is not None and (isinstance(ms, bool) or not isinstance(ms, (int, float)) or not math.isfinite(ms) or ms <= 0):
        raise file_error(path, f"ms_per_slice must be a positive number or null, got {ms!r}")
    if not isinstance(report, dict) or "ms_per_slice" not in report:
        raise file_error(path, "is not a timing report (no ms_per_slice)")
    return report


def speed_for_tiebreak(ms_per_slice: float | None, timing: str | Path | None, reconstructions: str | Path) -> tuple[float | None, str]:
    """(ms/slice, where it came from): ``--ms-per-slice``, else ``--timing``, else ``<reconstructions>/timing.json``
    if it exists, else None (the tiebreak then counts 2,000 ms/slice)."""
    if ms_per_slice is not None:
        if not (math.isfinite(ms_per_slice) and ms_per_slice > 0):
            raise UserInputError(f"--ms-per-slice must be a positive number, got {ms_per_slice}")
        return ms_per_slice, "--ms-per-slice"
    path = Path(timing) if timing else Path(reconstructions) / TIMING_REPORT_NAME
    if not timing and not path.is_file():
        return None, f"no {path}"
    report = read_timing_report(path)
    note = f"{path}" + (f", measured at batch {report['batch_size']}, not the harness's batch 1" if report.get("batch_size", 1) != 1 else "")
    return report["ms_per_slice"], note
