"""Blosc chunk encoding into reused buffers.

``numcodecs.Blosc.encode`` allocates a fresh output of the chunk's full size for every chunk and
then copies the compressed bytes out of it: for 16 MB chunks that is page faults and copies on
every call. Here the same c-blosc function (``blosc_compress_ctx``, from numcodecs' own build, so
the bytes are identical) compresses into a per-thread buffer that is reused, with the GIL released.
Falls back to ``numcodecs`` when the symbol is not exported (``fast_path`` logs why, once).
LZ4 chunks of at least 32 KiB are written by ``blosc_lz4`` instead (same bytes, vectorised
shuffles).
"""

from __future__ import annotations

import ctypes
import logging
from functools import lru_cache

import numpy as np
from numcodecs import Blosc

from maxrf.compat.numcodecs import blosc_function
from maxrf.scratch import thread_buffer

log = logging.getLogger("maxrf")


def _lz4():
    """The compiled LZ4 encoder, imported on first encode: numba's import (0.15 s) is no part
    of opening a datastack to read it (the viewer's start)."""
    from maxrf.datastack import blosc_lz4

    return blosc_lz4


@lru_cache(maxsize=1)
def fast_path() -> str | None:
    """Why the fast path is off (None: on). Logged once, so a numcodecs build without the
    symbols is seen, not silently slower (docs/performance.md: "Encoding")."""
    why = None
    if _compress_ctx() is None:
        why = "numcodecs' blosc library does not export blosc_compress_ctx"
    elif not _lz4().available():
        why = "numcodecs' blosc library does not export LZ4_compress_fast"
    if why:
        import numcodecs

        log.warning("blosc fast path off (numcodecs %s): %s; chunks are encoded by "
                    "numcodecs.Blosc (same bytes, slower)", numcodecs.__version__, why)
    return why


@lru_cache(maxsize=1)
def _compress_ctx():
    fn = blosc_function("blosc_compress_ctx")
    if fn is None:
        return None
    fn.restype = ctypes.c_int
    fn.argtypes = [
        ctypes.c_int,  # clevel
        ctypes.c_int,  # doshuffle
        ctypes.c_size_t,  # typesize
        ctypes.c_size_t,  # nbytes
        ctypes.c_void_p,  # src
        ctypes.c_void_p,  # dest
        ctypes.c_size_t,  # destsize
        ctypes.c_char_p,  # compressor
        ctypes.c_size_t,  # blocksize
        ctypes.c_int,  # numinternalthreads
    ]
    return fn


def _scratch(name: str, nbytes: int) -> np.ndarray:
    return thread_buffer(name, (nbytes,), np.uint8)


def _compiled(codec: Blosc, nbytes: int) -> bool:
    """Whether ``blosc_lz4`` writes this chunk (automatic block size, LZ4, >= 32 KiB)."""
    return (
        codec.cname == "lz4"
        and codec.blocksize == 0
        and 1 <= codec.clevel <= 9
        and _lz4().L1 <= nbytes <= _lz4().MAX_NBYTES
        and _lz4().available()
    )


class BloscEncoder:
    """Encodes like ``numcodecs.Blosc(cname, clevel, shuffle, blocksize)`` (single-threaded)."""

    def __init__(self, codec: Blosc) -> None:
        self.codec = codec

    def __getstate__(self) -> dict:
        return {"codec": self.codec}

    def __setstate__(self, state: dict) -> None:
        self.codec = state["codec"]

    def encode_view(self, data: np.ndarray, slot: str) -> memoryview:
        """Compressed bytes of ``data`` in this thread's buffer ``slot``: valid until the next
        call with the same slot in the same thread."""
        fast_path()  # logs why it is off, once (cached)
        fn = _compress_ctx()
        if fn is None:
            return memoryview(self.codec.encode(data))
        data = np.ascontiguousarray(data)
        c = self.codec
        size = data.nbytes + _lz4().OVERHEAD  # as numcodecs: decides when blosc stores a copy
        dest = thread_buffer(f"blosc-{slot}", (size,), np.uint8)
        if _compiled(c, data.nbytes):
            n = _lz4().encode_into(data, c.clevel, c.shuffle, dest, _scratch)
            return memoryview(dest)[:n]
        n = fn(
            c.clevel,
            c.shuffle,  # numcodecs' NOSHUFFLE/SHUFFLE/BITSHUFFLE are c-blosc's 0/1/2
            data.dtype.itemsize,
            data.nbytes,
            data.ctypes.data,
            dest.ctypes.data,
            size,
            c.cname.encode(),
            c.blocksize,
            1,
        )
        if n <= 0:
            raise RuntimeError(f"blosc compression failed ({n})")
        return memoryview(dest)[:n]

    def encode(self, data: np.ndarray) -> bytes:
        return bytes(self.encode_view(data, "encode"))
