"""Giving a finished step's memory back: steps run one after another in one process (the CLI's
Prefect flow, the Python API), and glibc keeps the heap a step freed in its arenas (one per
thread that allocated), so the process's resident size grows step by step. ``release()`` runs
the garbage collector and asks glibc to return free heap pages to the system (``malloc_trim``;
a no-op where there is no glibc)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from functools import cache


@cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release() -> None:
    """Collect garbage and return the heap's free pages to the system."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


M_MMAP_THRESHOLD = -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD_BYTES = 4 << 20


def limit_heap() -> None:
    """For a long-running command: blocks of 4 MB and more are mapped on their own and go back
    to the system when freed (glibc raises this threshold as large blocks are freed, up to
    32 MB, after which big arrays live in the heap and their pages stay with the process)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
