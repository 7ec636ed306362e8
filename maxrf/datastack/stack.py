"""``DataStack``: a zarr v3 group in one zip file, one array per layer, that no crash can destroy.

Writes are staged: each new layer is written as a plain zarr array in a staging folder beside the
file (chunk writes in parallel, from threads or dask workers), then *committed* under an exclusive
OS lock by appending its entries (chunks first, metadata last) to the zip behind a rollback journal.
Readers never lock: they see the last committed state (through the journal while an append is under
way) and roll back an interrupted append when its writer is gone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr
from zarr.storage import LocalStore, ZipStore

from .. import __version__
from ..errors import DataStackError, LayerNotFoundError
from . import layers as L
from .journal import CommittedView, read_journal, rollback, write_journal
from .lock import file_lock, fsync_dir, try_lock

log = logging.getLogger("maxrf")

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

    def __init__(self, path: str | Path, lock_timeout: float = 120.0) -> None:
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self._snap: _Snapshot | None = None

    # ---- sidecar files -------------------------------------------------------------------
    @property
    def journal_path(self) -> Path:
        return self.path.with_name(f".{self.path.name}.journal")

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(f".{self.path.name}.lock")

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
                    if rollback(self.journal_path, self.path):
                        log.warning("maxrf: %s: rolled back an interrupted append", self.path)
                    return None
                except OSError:
                    pass  # no write permission: serve the committed view instead
            saved = read_journal(self.journal_path)
            return None if saved is None else CommittedView(self.path, *saved)
        finally:
            if fd is not None:
                os.close(fd)

    def _open(self) -> _Snapshot:
        if not self.path.exists():
            raise DataStackError("datastack not found", self.path)
        if self.path.is_dir():
            raise DataStackError("is a directory, not a .datastack file", self.path)
        last: Exception | None = None
        for _attempt in range(50):
            view = self._recover_if_needed()
            try:
                stat = self._stat()
                fileobj = view or open(self.path, "rb")
                zf = zipfile.ZipFile(fileobj)
                names = _layer_names(zf.namelist())
                if "zarr.json" not in zf.NameToInfo:
                    raise DataStackError(
                        "is a zip file but not a datastack (no zarr group)", self.path
                    )
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
            raise DataStackError(
                f"not a valid datastack zip file ({last}); try 'maxrf recover'", self.path
            )
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
        return snap.group[key]

    def read(self, name: str, latest: bool = True, compute: bool = True):
        """A layer as numpy (or dask with ``compute=False``, chunked as stored)."""
        arr = self.array(name, latest)
        if compute:
            return arr[...]
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
    def staging(self) -> Iterator[Staging]:
        """Stage layers, committed together on clean exit; discarded on error."""
        stage = Staging(self)
        try:
            yield stage
            stage.commit()
        finally:
            stage.discard()

    def append(
        self,
        arr: np.ndarray | da.Array,
        name: str,
        attrs: dict | None = None,
        chunks: tuple[int, ...] | None = None,
        compressor: Any = None,
    ) -> str:
        """Write a numpy or dask array as a new layer (a new version if ``name`` exists)."""
        with self.staging() as stage:
            stage.write(name, arr, attrs=attrs, chunks=chunks, compressor=compressor)
        return stage.committed[name]

    def append_list(
        self, ragged: Sequence[Sequence[int]], name: str, attrs: dict | None = None
    ) -> str:
        """Write ragged int lists, padded with -9999 (a value of -9999 is refused)."""
        padded = L.ragged_to_padded(ragged)
        return self.append(padded, name, attrs={**(attrs or {}), "ragged_pad": L.PAD})

    def repack(self, select: Sequence[str] | None = None, output: str | Path | None = None) -> Path:
        """Rewrite keeping only the latest version of each (selected) layer under its plain name."""
        from .integrity import repack

        return repack(self, select, output)

    @contextmanager
    def write_lock(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the exclusive writer lock (commits and repacks take it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(self.lock_path, self.lock_timeout if timeout is None else timeout):
            yield

    def _commit(self, stage: Staging) -> dict[str, str]:
        with self.write_lock():
            if self.journal_path.exists() and rollback(self.journal_path, self.path):
                log.warning("maxrf: %s: rolled back an interrupted append", self.path)
            if not self.path.exists():
                _create_empty(self.path)
            with zipfile.ZipFile(self.path) as zf:  # validity check before mode "a"
                if "zarr.json" not in zf.NameToInfo:
                    raise DataStackError(
                        "is a zip file but not a datastack (no zarr group)", self.path
                    )
                existing = _layer_names(zf.namelist())
                start_dir = zf.start_dir
            finals: dict[str, str] = {}
            for name in stage.order:
                finals[name] = L.next_version(name, existing + list(finals.values()))
            write_journal(self.journal_path, self.path, start_dir)
            try:
                _append_entries(self.path, stage, finals)
            except BaseException as exc:
                rollback(self.journal_path, self.path)
                if isinstance(exc, OSError):
                    raise DataStackError(
                        f"could not write ({exc.strerror or exc}); the file is unchanged", self.path
                    ) from None
                raise
            self.journal_path.unlink()
            fsync_dir(self.path.parent)
        self._snap = None
        return finals


class Staging:
    """Layers being written: plain zarr arrays in a folder beside the datastack."""

    def __init__(self, ds: DataStack) -> None:
        self.ds = ds
        folder = ds.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.dir = folder / f".{ds.path.name}.staging-{uuid.uuid4().hex[:12]}"
            self.dir.mkdir()
            self._owner = os.open(self.dir / "owner.lock", os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise DataStackError(f"cannot write in this folder ({exc.strerror})", folder) from None
        try_lock(self._owner)
        self.store = LocalStore(self.dir)
        self.order: list[str] = []
        self.keys: dict[str, str] = {}
        self.started: dict[str, float] = {}
        self.committed: dict[str, str] = {}
        _cleanup_stale_staging(ds)

    def create(
        self,
        name: str,
        shape: tuple[int, ...],
        dtype: Any,
        chunks: tuple[int, ...] | None = None,
        compressor: Any = None,
        attrs: dict | None = None,
    ) -> zarr.Array:
        """An empty staged array for the caller to fill (chunk-aligned writes only)."""
        L.check_name(name)
        if name in self.keys:
            raise DataStackError(f"layer {name!r} staged twice in one commit")
        dtype = np.dtype(dtype).newbyteorder("=")
        key = f"l{len(self.order)}"
        self.keys[name] = key
        self.order.append(name)
        self.started[name] = time.time()
        chunks = chunks or L.default_chunks(tuple(shape), dtype.itemsize)
        try:
            return zarr.create_array(
                self.store,
                name=key,
                shape=shape,
                dtype=dtype,
                chunks=chunks,
                compressors=[compressor or L.default_compressor(dtype)],
                fill_value=0,
                attributes=_jsonable(attrs or {}),
                config=ARRAY_CONFIG,
            )
        except OSError as exc:
            raise DataStackError(
                f"cannot stage layer {name!r} ({exc.strerror})", self.dir
            ) from None

    def write(
        self,
        name: str,
        arr: np.ndarray | da.Array,
        attrs: dict | None = None,
        chunks: tuple[int, ...] | None = None,
        compressor: Any = None,
    ) -> zarr.Array:
        """Stage a whole numpy or dask array (dask: chunk-aligned, bounded memory)."""
        if not isinstance(arr, da.Array):
            arr = np.asarray(arr)
        if arr.dtype.kind not in "biuf":
            raise DataStackError(f"layer {name!r}: unsupported dtype {arr.dtype}")
        z = self.create(name, arr.shape, arr.dtype, chunks, compressor, attrs)
        try:
            if isinstance(arr, da.Array):
                aligned = arr.rechunk(_aligned_chunks(z.chunks, arr.shape, arr.dtype.itemsize))
                da.store(aligned.astype(z.dtype), z, lock=False, compute=True)
            elif arr.size:
                z[...] = arr
        except OSError as exc:
            raise DataStackError(
                f"cannot stage layer {name!r} ({exc.strerror})", self.dir
            ) from None
        return z

    def finish(self, name: str, attrs: dict | None = None) -> None:
        """Add the completeness mark (and provenance) to a staged layer's attributes."""
        z = zarr.open_array(self.store, path=self.keys[name], mode="r+")
        meta = dict(z.attrs.get("maxrf", {}))
        meta.update(_jsonable((attrs or {}).get("maxrf", {})))
        meta.setdefault("version", __version__)
        meta.setdefault("created", utc_now())
        meta.setdefault("duration_s", round(time.time() - self.started[name], 3))
        meta["complete"] = True
        other = {k: v for k, v in (attrs or {}).items() if k != "maxrf"}
        z.attrs.update({**_jsonable(other), "maxrf": meta})

    def commit(self) -> dict[str, str]:
        if not self.order:
            return {}
        for name in self.order:
            z = zarr.open_array(self.store, path=self.keys[name], mode="r")
            if not z.attrs.get("maxrf", {}).get("complete"):
                self.finish(name)
        self.committed = self.ds._commit(self)
        return self.committed

    def discard(self) -> None:
        if self._owner is not None:
            os.close(self._owner)
            self._owner = None
        shutil.rmtree(self.dir, ignore_errors=True)


def _aligned_chunks(zchunks, shape, itemsize, target: int = 96 * 2**20) -> tuple[int, ...]:
    """dask chunks that are whole multiples of the zarr chunks (no concurrent partial writes)."""
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


def _append_entries(path: Path, stage: Staging, finals: dict[str, str]) -> None:
    """Append staged layers: every layer's chunks first, metadata last; then fsync."""
    with zipfile.ZipFile(path, "a", zipfile.ZIP_STORED, allowZip64=True) as zf:
        metas = []
        for name in stage.order:
            root = stage.dir / stage.keys[name]
            for dirpath, _dirs, files in os.walk(root):
                for fname in sorted(files):
                    src = Path(dirpath) / fname
                    rel = src.relative_to(root).as_posix()
                    if rel == "zarr.json":
                        metas.append((src, f"{finals[name]}/zarr.json"))
                    else:
                        zf.write(src, f"{finals[name]}/{rel}")
        for src, arcname in metas:
            zf.write(src, arcname)
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _cleanup_stale_staging(ds: DataStack) -> None:
    """Remove staging folders whose writer died (their owner lock is free)."""
    for d in ds.path.parent.glob(f".{ds.path.name}.staging-*"):
        try:
            fd = os.open(d / "owner.lock", os.O_RDWR)
        except OSError:
            continue
        try:
            if try_lock(fd):
                shutil.rmtree(d, ignore_errors=True)
        finally:
            os.close(fd)


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
        a = snap.group[name]
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
