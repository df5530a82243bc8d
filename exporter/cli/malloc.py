"""glibc malloc settings for a process that batches many small objects.

Measured here (shared/research/perf-limits.md): without them, glibc trims and refaults
the heap around every batch, about two page faults per event; with a high trim
threshold and top pad, batching costs a tenth of that. Setting them is a no-op where
mallopt does not exist.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3


def tune_malloc() -> bool:
    """Raise glibc's trim threshold, top pad and mmap threshold; True if applied."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return all(
        mallopt(option, value) == 1
        for option, value in (
            (_M_TRIM_THRESHOLD, 256 << 20),
            (_M_TOP_PAD, 64 << 20),
            (_M_MMAP_THRESHOLD, 32 << 20),
        )
    )
