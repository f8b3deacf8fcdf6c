"""The oldest torch this repository runs on, and why: loading a checkpoint must be safe.

Checkpoints are loaded with ``torch.load(weights_only=True)``, which is only as safe as its unpickler. Published
advisories against it: GHSA-53q9-r3pm-6pq6 (CVE-2025-32434, code execution, fixed in 2.6.0) and
GHSA-63cw-57p8-fm3p (CVE-2026-24747, memory corruption and code execution through crafted opcodes and storage
sizes, fixed in 2.10.0). 2.10.0 also has every API used here (``torch.serialization.safe_globals`` arrived in 2.5).
The version is read from the installed package's metadata, so the check costs no torch import.
"""
from __future__ import annotations

import re
from importlib import metadata

from utils.errors import UserInputError

__all__ = ["TORCH_FLOOR", "torch_version", "require_safe_torch"]

TORCH_FLOOR = (2, 10, 0)
ADVISORY = "GHSA-63cw-57p8-fm3p, a weights_only bypass fixed in 2.10.0"


def torch_version() -> tuple[int, int, int] | None:
    """The installed torch as (major, minor, patch), None if it is not installed or its version is unreadable."""
    try:
        version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None
    found = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    return (int(found[1]), int(found[2]), int(found[3] or 0)) if found else None


def require_safe_torch(version: tuple[int, int, int] | None = None) -> None:
    """Raise one UserInputError unless torch >= :data:`TORCH_FLOOR` is installed."""
    version = version or torch_version()
    floor = ".".join(map(str, TORCH_FLOOR))
    if version is None:
        raise UserInputError(f"torch is not installed; install torch>={floor} first (README: Set-up)")
    if version < TORCH_FLOOR:
        raise UserInputError(f"torch {'.'.join(map(str, version))} is older than {floor}, the oldest release without a published "
                             f"weights_only bypass ({ADVISORY}); upgrade with pip install 'torch>={floor}'")
