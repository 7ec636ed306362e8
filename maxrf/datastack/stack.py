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
import sys
import threading
import time
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
from numcodecs import Blosc, Zstd
from zarr.core.chunk_key_encodings import DefaultChunkKeyEncoding
from zarr.storage import MemoryStore, ZipStore

from .. import __version__
from ..errors import DataStackError, LayerNotFoundError
from . import layers as L
from .blosc import BloscEncoder
from .journal import (
    CommittedView,
    JournalMismatch,
    belongs_to,
    read_journal,
    rollback,
    write_journal,
)
from .lock import file_lock, fsync_dir, try_lock
from .zipdir import ZipFormatError, read_directory
from .zipwrite import ParallelZipWriter

if TYPE_CHECKING:
    import dask.array as da

log = logging.getLogger("maxrf")
_CHUNK_KEYS = DefaultChunkKeyEncoding(separator="/")

ROOT_META = {"zarr_format": 3, "node_type": "group", "attributes": {}}
ARRAY_CONFIG = {"write_empty_chunks": True}  # every chunk stored: a missing one means damage


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class _Snapshot:
    """One committed state of the file, open for reading."""

    stat: tuple[int, int, int]
    group: zarr.Group
    names: list[str]
    fileobj: Any


class DataStack:
    """A ``.datastack`` file. ``DataStack(path)`` opens (or, on first write, creates) it."""

    def __init__(self, path: str | Path, lock_timeout: float | None = None) -> None:
        self.path = Path(path)
        if lock_timeout is None:  # `maxrf --lock-wait S` sets MAXRF_LOCK_WAIT
            lock_timeout = float(os.environ.get("MAXRF_LOCK_WAIT", "120"))
        self.lock_timeout = lock_timeout
        self._snap: _Snapshot | None = None

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

    def _open(self) -> _Snapshot:
        if not self.path.exists():
            raise DataStackError("datastack not found", self.path)
        self._require_regular()
        last: Exception | None = None
        for _attempt in range(50):
            view = self._recover_if_needed()
            try:
                stat = self._stat()
                fileobj = view or open(self.path, "rb")
                zf = zipfile.ZipFile(fileobj)
                names = _layer_names(zf.namelist())
                _require_group(zf, self.path)
                zf.close()
                fileobj.seek(0)
                group = zarr.open_group(ZipStore(fileobj, mode="r"), mode="r")
                return _Snapshot(stat, group, names, fileobj)
            except (zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
                last = exc
                if not self.journal_path.exists() and _attempt >= 2:
                    break
                time.sleep(0.05)  # an append may be starting: look again
        if isinstance(last, zipfile.BadZipFile) or isinstance(last, ValueError):
            raise DataStackError(f"not a valid datastack zip file ({last}){_hint(self.path)}",
                                 self.path)
        raise DataStackError(f"cannot read ({last})", self.path)

    def _snapshot(self) -> _Snapshot:
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
        return list(self._snapshot().names)

    def latest(self, name: str) -> str:
        """The newest version of ``name`` (``name``, ``name_``, ``name__`` …)."""
        found = L.versions(name, self._snapshot().names)
        if not found:
            raise LayerNotFoundError(
                f"no layer {name!r} (layers: {', '.join(self.layers) or 'none'})", self.path
            )
        return found[-1]

    def __contains__(self, name: str) -> bool:
        return bool(L.versions(name, self._snapshot().names))

    def array(self, name: str, latest: bool = True) -> zarr.Array:
        """The zarr array of a layer (read-only)."""
        snap = self._snapshot()
        key = self.latest(name) if latest else name
        if key not in snap.names:
            raise LayerNotFoundError(f"no layer {name!r}", self.path)
        try:
            return snap.group[key]
        except (ValueError, TypeError, KeyError) as exc:  # unreadable metadata (JSON, fields)
            why = " ".join(str(exc).split())[:120]
            raise DataStackError(
                f"layer {key!r}: damaged metadata ({why}); try 'maxrf recover'", self.path
            ) from None

    def read(self, name: str, latest: bool = True, compute: bool = True):
        """A layer as numpy (or dask with ``compute=False``, chunked as stored)."""
        arr = self.array(name, latest)
        if compute:
            return arr[...]
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
            self._recover_locked()
            try:
                with zipfile.ZipFile(self.path) as zf:  # validity check before mode "a"
                    _require_group(zf, self.path)
                    existing = _layer_names(zf.namelist())
                    start_dir = zf.start_dir
            except (zipfile.BadZipFile, OSError) as exc:
                raise DataStackError(
                    f"not a valid datastack zip file ({exc}); nothing was written"
                    f"{_hint(self.path)}",
                    self.path,
                ) from None
            try:
                write_journal(self.journal_path, self.file, start_dir)
            except OSError as exc:
                raise DataStackError(
                    f"could not write the rollback journal ({exc.strerror or exc}); "
                    "nothing was written", self.path,
                ) from None
            try:
                with open(self.file, "rb+") as f:
                    f.seek(start_dir)
                    directory = read_directory(f.read(), start_dir)
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
                                         f"{_hint(self.path)}", self.path) from None
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

    def repack(self, select: Sequence[str] | None = None, output: str | Path | None = None) -> Path:
        """Rewrite keeping only the latest version of each (selected) layer under its plain name."""
        from .integrity import repack

        return repack(self, select, output)

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

    def _recover_locked(self) -> None:
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


@dataclass(frozen=True)
class ChunkEncoder:
    """Encodes array regions into zarr chunk entries; picklable, so dask workers can use it."""

    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    codec: Any

    def key(self, start: tuple[int, ...]) -> str:
        """The zip entry name (below the layer) of the chunk starting at ``start``, as zarr's
        default chunk-key encoding names it (the layers are created with it)."""
        coords = tuple(a // c for a, c in zip(start, self.chunks, strict=True))
        return _CHUNK_KEYS.encode_chunk_key(coords)

    def encode_chunk(
        self, start: tuple[int, ...], data: np.ndarray, slot: str
    ) -> tuple[str, memoryview]:
        """Encode the one chunk at ``start`` (``data`` may be an edge chunk's smaller part) into
        this thread's buffer ``slot``; the view is valid until the slot's next use."""
        if any(s % c for s, c in zip(start, self.chunks, strict=True)) or any(
            n > c for n, c in zip(data.shape, self.chunks, strict=True)
        ):
            raise ValueError(f"region {start} {data.shape} is not one chunk of {self.chunks}")
        data = data.astype(self.dtype, copy=False)
        if data.shape != self.chunks:  # edge chunks are stored padded to full size
            full = np.zeros(self.chunks, dtype=self.dtype)
            full[tuple(slice(0, n) for n in data.shape)] = data
            data = full
        if isinstance(self.codec, BloscEncoder):
            return self.key(start), self.codec.encode_view(data, slot)
        return self.key(start), memoryview(self.codec.encode(np.ascontiguousarray(data)))

    def encode_region(self, start: tuple[int, ...], data: np.ndarray) -> list[tuple[str, bytes]]:
        """Encode the chunks covering ``data`` placed at ``start`` (aligned to the chunk grid)."""
        if any(s % c for s, c in zip(start, self.chunks, strict=True)):
            raise ValueError(f"region start {start} not aligned to chunks {self.chunks}")
        out = []
        counts = [-(-n // c) for n, c in zip(data.shape, self.chunks, strict=True)]
        for idx in np.ndindex(*counts):
            lo = [i * c for i, c in zip(idx, self.chunks, strict=True)]
            part = data[tuple(slice(a, a + c) for a, c in zip(lo, self.chunks, strict=True))]
            at = tuple(a + b for a, b in zip(start, lo, strict=True))
            key, view = self.encode_chunk(at, part, "region")
            out.append((key, bytes(view)))
        return out


class LayerWriter:
    """One layer being appended: encode chunks in any thread, write them to the zip in order."""

    def __init__(self, app: Appender, name: str, stored: str, z: zarr.Array, meta: dict) -> None:
        self.app, self.name, self.stored, self.meta = app, name, stored, meta
        dtype = np.dtype(z.dtype).newbyteorder("<")
        self.encoder = ChunkEncoder(tuple(z.shape), tuple(z.chunks), dtype, _numcodec(z))
        self.shape, self.chunks = self.encoder.shape, self.encoder.chunks
        self.started = time.time()
        self.written = 0

    def put(self, encoded: list[tuple[str, bytes]]) -> None:
        """Write encoded chunks (from ``ChunkEncoder.encode_region``) into the zip."""
        self.app._put(self, encoded)

    def write_region(self, start: tuple[int, ...], data: np.ndarray) -> None:
        """Encode (in the calling thread) and write the chunks of one aligned region."""
        self.put(self.encoder.encode_region(start, data))


class Appender:
    """The layers of one commit. Chunk entries go straight into the zip; metadata goes last."""

    def __init__(self, ds: DataStack, out: ParallelZipWriter, existing: list[str]) -> None:
        self.ds, self.existing = ds, existing
        self.writers: dict[str, LayerWriter] = {}
        self.committed: dict[str, str] = {}
        self._lock = threading.Lock()
        self._out = out

    def create(
        self,
        name: str,
        shape: tuple[int, ...],
        dtype: Any,
        chunks: tuple[int, ...] | None = None,
        compressor: Any = None,
        attrs: dict | None = None,
    ) -> LayerWriter:
        """Start a layer; fill it with ``write_region`` (from any thread), then it is finished
        automatically at commit (or explicitly with ``finish`` to add provenance)."""
        L.check_name(name)
        if name in self.writers:
            raise DataStackError(f"layer {name!r} written twice in one commit")
        dtype = np.dtype(dtype).newbyteorder("=")
        if dtype.kind not in "biuf":
            raise DataStackError(f"layer {name!r}: unsupported dtype {dtype}")
        shape = tuple(int(s) for s in shape)
        chunks = tuple(chunks or L.default_chunks(shape, dtype.itemsize))
        stored = L.next_version(name, self.existing + [w.stored for w in self.writers.values()])
        d: dict = {}
        z = zarr.create_array(
            MemoryStore(d),
            name="a",
            shape=shape,
            dtype=dtype,
            chunks=chunks,
            compressors=[compressor or L.default_compressor(dtype)],
            fill_value=0,
            attributes=_jsonable(attrs or {}),
            config=ARRAY_CONFIG,
            write_data=False,
        )
        meta = json.loads(d["a/zarr.json"].to_bytes())
        writer = LayerWriter(self, name, stored, z, meta)
        self.writers[name] = writer
        return writer

    def write(
        self,
        name: str,
        arr: np.ndarray | da.Array,
        attrs: dict | None = None,
        chunks: tuple[int, ...] | None = None,
        compressor: Any = None,
    ) -> str:
        """Write a whole numpy or dask array (dask: block by block, bounded memory)."""
        lazy = _is_dask(arr)
        if not lazy:
            arr = np.asarray(arr)
        if arr.dtype.kind not in "biuf":
            raise DataStackError(f"layer {name!r}: unsupported dtype {arr.dtype}")
        w = self.create(name, arr.shape, arr.dtype, chunks, compressor, attrs)
        if lazy:
            import dask

            aligned = arr.rechunk(_aligned_chunks(w.chunks, arr.shape, arr.dtype.itemsize))
            blocks = [
                dask.delayed(_encode_block)(
                    w.encoder, aligned.blocks[idx], _block_start(aligned, idx)
                )
                for idx in np.ndindex(*aligned.numblocks)
            ]
            for i in range(0, len(blocks), 4):  # stream: a few blocks in memory at a time
                for encoded in dask.compute(*blocks[i : i + 4]):
                    w.put(encoded)
        elif arr.size:
            w.write_region((0,) * arr.ndim, arr)
        return w.stored

    def write_list(
        self, name: str, rows: Sequence[Sequence[int]], attrs: dict | None = None
    ) -> str:
        """Write ragged int lists padded with -9999 (a value of -9999 is refused)."""
        padded = L.ragged_to_padded(rows)
        return self.write(name, padded, attrs={**(attrs or {}), "ragged_pad": L.PAD})

    def finish(self, name: str, attrs: dict | None = None) -> None:
        """Record provenance (merged under ``attrs["maxrf"]``) for a layer of this commit."""
        w = self.writers[name]
        extra = dict(attrs or {})
        meta = {**w.meta["attributes"].get("maxrf", {}), **_jsonable(extra.pop("maxrf", {}))}
        w.meta["attributes"].update(_jsonable(extra))
        w.meta["attributes"]["maxrf"] = meta

    def _put(self, w: LayerWriter, encoded: list[tuple[str, bytes]]) -> None:
        for key, data in encoded:
            self._out.write(f"{w.stored}/{key}", data)
        with self._lock:
            w.written += len(encoded)

    def close(self) -> None:
        """Write every layer's metadata (with the completeness mark) after all its chunks."""
        for name, w in self.writers.items():
            expected = int(np.prod([-(-s // c) for s, c in zip(w.shape, w.chunks, strict=True)]))
            if w.written != expected:
                raise DataStackError(
                    f"layer {name!r} got {w.written} of {expected} chunks; not committed",
                    self.ds.path,
                )
            meta = w.meta["attributes"].setdefault("maxrf", {})
            meta.setdefault("version", __version__)
            meta.setdefault("created", utc_now())
            meta.setdefault("duration_s", round(time.time() - w.started, 3))
            meta["complete"] = True
        for name, w in self.writers.items():
            self._out.write(f"{w.stored}/zarr.json", json.dumps(w.meta, indent=2).encode())
            self.committed[name] = w.stored
        self._out.finish()

    def abort(self) -> None:
        """Stop background work after an error (the journal restores the file)."""
        self._out.abort()


def _encode_block(enc: ChunkEncoder, block: np.ndarray, start: tuple[int, ...]):
    return enc.encode_region(start, np.asarray(block))


def _block_start(arr: da.Array, idx: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(sum(c[:i])) for c, i in zip(arr.chunks, idx, strict=True))


def _numcodec(z: zarr.Array):
    """The numcodecs codec producing exactly the chunk bytes zarr would write."""
    (codec,) = z.compressors
    cfg = codec.to_dict()["configuration"]
    if codec.to_dict()["name"] == "blosc":
        shuffle = {
            "noshuffle": Blosc.NOSHUFFLE,
            "shuffle": Blosc.SHUFFLE,
            "bitshuffle": Blosc.BITSHUFFLE,
        }[cfg["shuffle"]]
        return BloscEncoder(
            Blosc(
                cname=cfg["cname"],
                clevel=cfg["clevel"],
                shuffle=shuffle,
                blocksize=cfg.get("blocksize", 0),
            )
        )
    if codec.to_dict()["name"] == "zstd":
        return Zstd(level=cfg["level"], checksum=cfg.get("checksum", False))
    raise DataStackError(f"unsupported codec {codec.to_dict()['name']!r}")


def _is_dask(arr: Any) -> bool:
    """A dask array? (Without importing dask: none can exist before dask.array is imported.)"""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(arr, da.Array)


def _require_group(zf: zipfile.ZipFile, path: Path) -> None:
    if "zarr.json" not in zf.NameToInfo:
        raise DataStackError("is a zip file but not a datastack (no zarr group)", path)


def _aligned_chunks(zchunks, shape, itemsize, target: int = 64 * 2**20) -> tuple[int, ...]:
    """dask chunks that are whole multiples of the zarr chunks (no chunk split across blocks)."""
    chunks = list(zchunks)
    for axis in range(len(chunks)):
        while (
            chunks[axis] * 2 <= max(shape[axis], 1)
            and int(np.prod(chunks)) * itemsize * 2 <= target
        ):
            chunks[axis] *= 2
    return tuple(chunks)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _layer_names(namelist: list[str]) -> list[str]:
    """Top-level arrays in commit order (an array's metadata is the last entry written)."""
    seen: list[str] = []
    for n in namelist:
        parts = n.split("/")
        if len(parts) == 2 and parts[1] == "zarr.json" and parts[0] not in seen:
            seen.append(parts[0])
    return seen


def _hint(path: Path) -> str:
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
    tmp = path.with_name(f".{path.name}.new-{os.getpid()}")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
            meta = {
                **ROOT_META,
                "attributes": {"maxrf": {"version": __version__, "created": utc_now()}},
            }
            zf.writestr("zarr.json", json.dumps(meta, indent=2))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataStackError(f"cannot create ({exc.strerror})", path) from None


def format_tree(ds: DataStack, show_arrays: bool = False) -> str:
    """Layers with shape, dtype, stored size and the step that made them."""
    snap = ds._snapshot()
    fileobj = snap.fileobj
    fileobj.seek(0)
    sizes: dict[str, int] = {}
    with zipfile.ZipFile(fileobj) as zf:
        for info in zf.infolist():
            top = info.filename.split("/")[0]
            sizes[top] = sizes.get(top, 0) + info.compress_size
    total = ds.path.stat().st_size
    lines = [f"{ds.path}  ({_human(total)}, {len(snap.names)} layers)"]
    for name in snap.names:
        try:
            a = ds.array(name, latest=False)
        except DataStackError as exc:
            lines.append(f"  {name:<28} damaged: {exc.reason}")
            continue
        shape = "x".join(map(str, a.shape)) or "scalar"
        meta = a.attrs.get("maxrf", {})
        step = f"  [{meta['step']}]" if isinstance(meta, dict) and meta.get("step") else ""
        lines.append(
            f"  {name:<28} {shape:>18} {str(a.dtype):>8} {_human(sizes.get(name, 0)):>10}{step}"
        )
        if show_arrays:
            lines.append(
                f"      chunks {a.chunks}, codecs {[type(c).__name__ for c in a.compressors]}"
            )
    return "\n".join(lines)


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def find_by_key(ds: DataStack, name: str, key: str) -> str | None:
    """The newest stored version of layer ``name`` whose provenance records cache ``key``."""
    try:
        names = ds.layers
    except DataStackError:
        return None
    for stored in reversed(L.versions(name, names)):
        meta = ds.attrs(stored, latest=False).get("maxrf", {})
        if meta.get("cache_key") == key and meta.get("complete"):
            return stored
    return None
