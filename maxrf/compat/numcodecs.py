"""numcodecs internals: C functions of the blosc library numcodecs ships, called through ctypes
(``blosc_compress_ctx`` releases the GIL per call; ``LZ4_compress_fast`` for the compiled
encoder). None when a build does not export them: callers fall back to ``numcodecs.Blosc``."""

from __future__ import annotations

import ctypes


def blosc_function(name: str):
    """The ctypes function ``name`` of numcodecs' blosc extension, or None."""
    try:
        from numcodecs import blosc

        return getattr(ctypes.CDLL(blosc.__file__), name)  # RTLD_LOCAL: nothing made global
    except (ImportError, OSError, AttributeError):
        return None
