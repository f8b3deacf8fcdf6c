"""Process-level allocator tuning for the scorer: keep freed memory for the next slice's temporaries."""
from __future__ import annotations

import ctypes

__all__ = ["retain_freed_memory"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


def retain_freed_memory() -> bool:
    """Let this process keep freed memory for its next arrays (glibc's ``mallopt``); False where unavailable.

    Scoring a slice makes some twenty temporaries of up to 600 KB. With glibc's defaults the heap above them
    is returned to the system after each slice and faulted in again for the next: about 20 % of the scorer's
    whole process at 1,856 slices (2.0 s against 1.6 s, docs/performance.md). Arrays up to 16 MiB then come from
    the heap, and up to 128 MiB of freed memory stays in the process. Meant for a scoring process
    (``leaderboard_eval.py`` calls it); it changes no result.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library already loaded into this process
    except (OSError, AttributeError):  # no mallopt (macOS, musl): keep the allocator's defaults
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, 16 << 20) and mallopt(_M_TRIM_THRESHOLD, 128 << 20))
