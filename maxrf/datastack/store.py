"""``DataStack``: a zarr v3 group in one zip file, one array per layer, that no crash can destroy.

Writes happen under an exclusive OS lock, behind a rollback journal: chunks (encoded in parallel
by any thread or dask worker, byte-identical to what zarr writes) are appended to the zip as they
come, each layer's metadata last; the new zip directory is written and fsynced at commit.
Readers never lock: they see the last committed state (through the journal while an append is under
way) and roll back an interrupted append when its writer is gone.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from maxrf import __version__
from maxrf.compat.zipfile import has_member
from maxrf.datastack import layers as L
from maxrf.datastack.journal import (
    CommittedView,
    JournalMismatch,
    belongs_to,
    read_journal,
    rollback,
    write_journal,
)
from maxrf.datastack.lock import file_lock, fsync_dir, try_lock
from maxrf.datastack.tree import format_tree
from maxrf.datastack.writer import Appender
from maxrf.datastack.zipdir import ZipFormatError, read_directory
from maxrf.datastack.zipindex import SharedZipFile, SharedZipStore
from maxrf.datastack.zipwrite import ParallelZipWriter
from maxrf.errors import DataStackError, LayerNotFoundError
from maxrf.io.atomic import atomic_write

if TYPE_CHECKING:
    import dask.array as da

log = logging.getLogger("maxrf")


@dataclass
class Snapshot:
    """One committed state of the file, open for reading."""

    stat: tuple[int, int, int]
    group: zarr.Group
    names: list[str]
    fileobj: Any


class DataStack:
    """A ``.datastack`` file. ``DataStack(path)`` opens (or, on first write, creates) it."""

    def __init__(self, path: str | Path, lock_timeout: float | None = None,
                 pins: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        if lock_timeout is None:  # `maxrf --lock-wait S` sets MAXRF_LOCK_WAIT
            lock_timeout = float(os.environ.get("MAXRF_LOCK_WAIT", "120"))
        self.lock_timeout = lock_timeout
        self.pins = dict(pins or {})  # layer name -> the version to read (a step's inputs)
        self._snap: Snapshot | None = None

    @classmethod
    def of(cls, datastack: str | Path | DataStack) -> DataStack:
        """``datastack`` itself when it is open already (its pins kept), else opened."""
        return datastack if isinstance(datastack, DataStack) else cls(datastack)

    # ---- the file and its sidecar files ----------------------------------------------------
    @property
    def file(self) -> Path:
        """The file itself (symbolic links resolved): locks, journals and replacements belong to
        it, not to a name that points at it."""
        return Path(os.path.realpath(self.path))

    @property
    def journal_path(self) -> Path:
        return self.file.with_name(f".{self.file.name}.journal")

    @property
    def lock_path(self) -> Path:
        return self.file.with_name(f".{self.file.name}.lock")

    def require_file(self) -> None:
        """Raise unless the datastack exists as a regular file (one-line errors)."""
        if not os.path.lexists(self.path) or not os.path.exists(self.path):
            raise DataStackError("datastack not found", self.path)
        self._require_regular()

    def _require_regular(self) -> None:
        """A FIFO, device or socket is never read or written as a datastack (it would hang)."""
        try:
            mode = os.stat(self.path).st_mode
        except FileNotFoundError:
            return
        except OSError as exc:
            raise DataStackError(f"cannot read ({exc.strerror})", self.path) from None
        if stat.S_ISDIR(mode):
            raise DataStackError("is a directory, not a .datastack file", self.path)
        if not stat.S_ISREG(mode):
            raise DataStackError("is not a regular file (a FIFO, device or socket)", self.path)

    def __repr__(self) -> str:
        return f"DataStack({str(self.path)!r})"

    # ---- reading -------------------------------------------------------------------------
    def _stat(self) -> tuple[int, int, int]:
        st = self.path.stat()
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _recover_if_needed(self) -> CommittedView | None:
        """Roll back an interrupted append whose writer is gone; else view the committed state."""
        saved = read_journal(self.journal_path)
        if saved is None and not self.journal_path.exists():
            return None
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            fd = None
        try:
            if fd is not None and try_lock(fd):
                try:
                    if rollback(self.journal_path, self.file):
                        log.warning("maxrf: %s: rolled back an interrupted append", self.path)
                    return None
                except JournalMismatch as exc:
                    log.warning("maxrf: %s: a leftover journal belongs to another file; left "
                                "it aside as %s, the file is untouched", self.path, exc.aside)
                    return None
                except OSError:
                    pass  # no write permission: serve the committed view instead
            saved = read_journal(self.journal_path)
            if saved is None or not belongs_to(saved[2], self.file):
                return None
            return CommittedView(self.file, *saved)
        finally:
            if fd is not None:
                os.close(fd)

    def _open(self) -> Snapshot:
        if not self.path.exists():
            raise DataStackError("datastack not found", self.path)
        self._require_regular()
        last: Exception | None = None
        for _attempt in range(50):
            view = self._recover_if_needed()
            try:
                stat = self._stat()
                fileobj = view or open(self.path, "rb")
                zf = SharedZipFile(fileobj)
                names = L.layer_names(zf.namelist())
                _require_group(zf, self.path)
                zf.close()
                fileobj.seek(0)
                group = zarr.open_group(SharedZipStore(fileobj, mode="r"), mode="r")
                return Snapshot(stat, group, names, fileobj)
            except (zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
                last = exc
                if not self.journal_path.exists() and _attempt >= 2:
                    break
                time.sleep(0.05)  # an append may be starting: look again
        if isinstance(last, zipfile.BadZipFile) or isinstance(last, ValueError):
            raise DataStackError(
                f"not a valid datastack zip file ({last}){recover_hint(self.path)}", self.path
            )
        raise DataStackError(f"cannot read ({last})", self.path)

    def forget(self) -> None:
        """Drop the cached committed state (after the file was replaced)."""
        self._snap = None

    def snapshot(self) -> Snapshot:
        """The last committed state (rolls back an interrupted append first)."""
        try:
            stat = self._stat()
        except FileNotFoundError:
            raise DataStackError("datastack not found", self.path) from None
        if self._snap is None or self._snap.stat != stat or self.journal_path.exists():
            self._snap = self._open()
        return self._snap

    @property
    def layers(self) -> list[str]:
        """All layer names (versions included), in the order they were committed."""
        return list(self.snapshot().names)

    def latest(self, name: str) -> str:
        """The newest version of ``name`` (``name``, ``name_``, ``name__`` …), or the version
        pinned for it (what a step reads is the version its inputs' keys name)."""
        if name in self.pins:
            if self.pins[name] not in self.snapshot().names:
                raise LayerNotFoundError(f"no layer {self.pins[name]!r} (the version of "
                                         f"{name!r} this step reads)", self.path)
            return self.pins[name]
        found = L.versions(name, self.snapshot().names)
        if not found:
            raise LayerNotFoundError(
                f"no layer {name!r} (layers: {', '.join(self.layers) or 'none'})", self.path
            )
        return found[-1]

    def __contains__(self, name: str) -> bool:
        return bool(L.versions(name, self.snapshot().names))

    def array(self, name: str, latest: bool = True) -> zarr.Array:
        """The zarr array of a layer (read-only)."""
        snap = self.snapshot()
        key = self.latest(name) if latest else name
        if key not in snap.names:
            raise LayerNotFoundError(f"no layer {name!r}", self.path)
        try:
            return snap.group[key]
        except (ValueError, TypeError, KeyError, zipfile.BadZipFile, zlib.error, EOFError,
                OSError) as exc:  # unreadable metadata (JSON, fields, CRC, zip records)
            why = " ".join(str(exc).split())[:120]
            raise DataStackError(
                f"layer {key!r}: damaged metadata ({why}); try 'maxrf recover'", self.path
            ) from None

    def read(self, name: str, latest: bool = True, compute: bool = True):
        """A layer as numpy (or dask with ``compute=False``, chunked as stored)."""
        arr = self.array(name, latest)
        if compute:
            try:
                return arr[...]
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                why = " ".join(str(exc).split())[:120]
                raise DataStackError(f"layer {name!r}: damaged chunk data ({why}); try "
                                     "'maxrf recover'", self.path) from None
        import dask.array as da

        return da.from_zarr(arr, chunks=arr.chunks)

    def read_list(self, name: str, latest: bool = True) -> list[np.ndarray]:
        """A ragged int list stored by ``append_list``."""
        return L.padded_to_ragged(self.read(name, latest))

    def attrs(self, name: str, latest: bool = True) -> dict:
        return dict(self.array(name, latest).attrs)

    def tree(self, show_arrays: bool = False) -> str:
        """A text overview: each layer with shape, dtype and stored size."""
        return format_tree(self, show_arrays)

    # ---- writing -------------------------------------------------------------------------
    @contextmanager
    def appending(self, timeout: float | None = None) -> Iterator[Appender]:
        """Add layers in one commit: holds the writer lock, journals the zip's tail, and on a
        clean exit writes the new directory and fsyncs; on any error restores the file."""
        with self.write_lock(timeout):
            self.settle_locked()
            try:
                with zipfile.ZipFile(self.path) as zf:  # validity check before mode "a"
                    _require_group(zf, self.path)
                    existing = L.layer_names(zf.namelist())
                    start_dir = zf.start_dir
            except (zipfile.BadZipFile, OSError) as exc:
                raise DataStackError(
                    f"not a valid datastack zip file ({exc}); nothing was written"
                    f"{recover_hint(self.path)}",
                    self.path,
                ) from None
            try:  # write access first: a read-only file must leave no journal behind
                f = open(self.file, "rb+")
            except OSError as exc:
                raise DataStackError(
                    f"cannot write ({exc.strerror or exc}); nothing was written", self.path
                ) from None
            try:
                tail = write_journal(self.journal_path, self.file, start_dir)
            except OSError as exc:
                f.close()
                raise DataStackError(
                    f"could not write the rollback journal ({exc.strerror or exc}); "
                    "nothing was written", self.path,
                ) from None
            try:
                with f:
                    directory = read_directory(tail, start_dir)
                    app = Appender(self, ParallelZipWriter(str(self.file), f.fileno(), directory),
                                   existing)
                    try:
                        yield app
                        app.close()
                    except BaseException:
                        app.abort()
                        raise
                    os.fsync(f.fileno())
            except BaseException as exc:
                rollback(self.journal_path, self.file)
                self._snap = None
                if isinstance(exc, OSError):
                    raise DataStackError(
                        f"could not write ({exc.strerror or exc}); the file is unchanged", self.path
                    ) from None
                if isinstance(exc, ZipFormatError):
                    raise DataStackError(f"damaged zip directory ({exc}); the file is unchanged"
                                         f"{recover_hint(self.path)}", self.path) from None
                raise
            self.journal_path.unlink()
            fsync_dir(self.file.parent)
        self._snap = None

    def append(
        self,
        arr: np.ndarray | da.Array,
        name: str,
        attrs: dict | None = None,
        chunks: tuple[int, ...] | None = None,
        compressor: Any = None,
    ) -> str:
        """Write a numpy or dask array as a new layer (a new version if ``name`` exists)."""
        with self.appending() as app:
            stored = app.write(name, arr, attrs=attrs, chunks=chunks, compressor=compressor)
        return stored

    def append_list(
        self, ragged: Sequence[Sequence[int]], name: str, attrs: dict | None = None
    ) -> str:
        """Write ragged int lists, padded with -9999 (a value of -9999 is refused)."""
        with self.appending() as app:
            stored = app.write_list(name, ragged, attrs)
        return stored

    @contextmanager
    def write_lock(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the exclusive writer lock (appends and repacks take it)."""
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataStackError(
                f"cannot create folder ({exc.strerror})", self.file.parent
            ) from None
        self._require_regular()
        wait = self.lock_timeout if timeout is None else timeout
        with file_lock(self.lock_path, wait):
            if not self.file.exists():
                yield
                return
            # Hard links share the inode, not the name: lock the file itself too.
            with file_lock(self.file, wait, create=False, what="writer lock (file)"):
                yield

    def settle_locked(self) -> None:
        """With the lock held: roll back a dead writer's append, create the file if missing."""
        try:
            if self.journal_path.exists() and rollback(self.journal_path, self.file):
                log.warning("maxrf: %s: rolled back an interrupted append", self.path)
        except JournalMismatch as exc:
            log.warning("maxrf: %s: a leftover journal belongs to another file; left it aside "
                        "as %s, the file is untouched", self.path, exc.aside)
        for stale in self.file.parent.glob(f".{self.file.name}.repack-*"):
            stale.unlink(missing_ok=True)  # a repack that died: we hold the lock now
        if not self.file.exists():
            _create_empty(self.file)


def _require_group(zf: zipfile.ZipFile, path: Path) -> None:
    if not has_member(zf, "zarr.json"):
        raise DataStackError("is a zip file but not a datastack (no zarr group)", path)


def recover_hint(path: Path) -> str:
    """'try maxrf recover' only for what was once a zip (a damaged datastack), not for any
    other file given by mistake."""
    try:
        with open(path, "rb") as f:
            return "; try 'maxrf recover'" if f.read(4) == b"PK\x03\x04" else (
                " (not a zip file at all: is this the right file?)")
    except OSError:
        return ""


def _create_empty(path: Path) -> None:
    """A new datastack: a zip holding the root group metadata, created atomically."""
    meta = {**L.ROOT_META,
            "attributes": {"maxrf": {"version": __version__, "created": L.utc_now()}}}

    def write(tmp: str) -> None:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr("zarr.json", json.dumps(meta, indent=2))

    try:
        atomic_write(path, write, durable=True, tag="new")
    except OSError as exc:
        raise DataStackError(f"cannot create ({exc.strerror})", path) from None
