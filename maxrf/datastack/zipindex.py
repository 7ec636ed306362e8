"""A datastack's zip directory read once per file version and shared by every reader of it.

A real-size datastack holds ~70 000 zip entries; Python's ``zipfile`` takes ~20 µs to parse each
(1.3 s), and every open of a snapshot parsed it twice (the layer names, then zarr's ``ZipStore``),
every ``DataStack`` of the same file again (the viewer opened four). The parsed directory is kept
per (device, inode, size, mtime): a committed datastack never changes in place (an append writes
a new directory and moves the mtime), so a reader of the same version gets the same entries."""

from __future__ import annotations

import os
import threading
import zipfile
from collections import OrderedDict

from zarr.storage import ZipStore

_KEPT = 8  # file versions whose directories are kept (a viewer and a chain need one or two)
_CACHE: OrderedDict[tuple, dict] = OrderedDict()
_LOCK = threading.Lock()
_STATE = ("filelist", "NameToInfo", "start_dir", "_comment")  # what _RealGetContents sets


def _version(fileobj) -> tuple | None:
    """(device, inode, size, mtime) of the file behind ``fileobj``; None when it has no file
    descriptor (a recovery view of a file being repaired: never shared)."""
    try:
        st = os.fstat(fileobj.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class SharedZipFile(zipfile.ZipFile):
    """A read-only ``ZipFile`` whose central directory comes from the per-version cache."""

    def __init__(self, fileobj) -> None:
        self._shared_version = _version(fileobj)
        super().__init__(fileobj, "r")

    def _RealGetContents(self) -> None:  # noqa: N802 (zipfile's name)
        key = self._shared_version
        with _LOCK:
            hit = _CACHE.get(key) if key is not None else None
            if hit is not None:
                _CACHE.move_to_end(key)
        if hit is None:
            super()._RealGetContents()
            if key is not None and all(hasattr(self, a) for a in _STATE):
                with _LOCK:
                    _CACHE[key] = {a: getattr(self, a) for a in _STATE}
                    while len(_CACHE) > _KEPT:
                        _CACHE.popitem(last=False)
            return
        # the entries are only read (open() in "r" mode reads the local header, never edits
        # the ZipInfo), so they are shared; the containers are this file's own
        self.filelist = list(hit["filelist"])
        self.NameToInfo = dict(hit["NameToInfo"])
        self.start_dir = hit["start_dir"]
        self._comment = hit["_comment"]


class SharedZipStore(ZipStore):
    """zarr's read-only ``ZipStore`` over a file object, its directory from the cache."""

    def _sync_open(self) -> None:
        if (self._zmode != "r" or getattr(self, "path", None) is not None
                or not hasattr(self, "_fileobj") or self._is_open):
            super()._sync_open()
            return
        self._zf = SharedZipFile(self._fileobj)
        self._was_opened = True
        self._is_open = True


def forget(fileobj=None) -> None:
    """Drop the cached directories (all, or that of ``fileobj``'s version)."""
    with _LOCK:
        if fileobj is None:
            _CACHE.clear()
        else:
            _CACHE.pop(_version(fileobj), None)
