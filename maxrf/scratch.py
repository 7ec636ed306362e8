"""Per-thread scratch buffers, reused from one chunk to the next.

A fresh 16 MB array per chunk costs page faults and zeroing every time; each worker thread keeps
one growing buffer per name instead.
"""

from __future__ import annotations

import threading

import numpy as np

_local = threading.local()


def thread_buffer(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised C-contiguous array of ``shape``/``dtype`` backed by this thread's buffer
    ``name``: valid until the next call with the same name in the same thread."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buf = getattr(_local, name, None)
    if buf is None or buf.size < nbytes:
        buf = np.empty(max(nbytes, 1), dtype=np.uint8)
        setattr(_local, name, buf)
    return buf[:nbytes].view(dtype).reshape(shape)
