"""Writing layers in one commit: chunks encoded by any thread or dask worker (byte-identical to
what zarr writes) go straight into the zip; each layer's metadata, with its completeness mark,
goes last."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
from zarr.storage import MemoryStore

from maxrf import __version__
from maxrf.compat.zarr import chunk_key_encoding
from maxrf.datastack import layers as L
from maxrf.datastack.blosc import BloscEncoder
from maxrf.datastack.codecs import numcodec
from maxrf.datastack.zipwrite import ParallelZipWriter
from maxrf.errors import DataStackError

if TYPE_CHECKING:
    import dask.array as da

    from maxrf.datastack.store import DataStack

_CHUNK_KEYS = chunk_key_encoding()


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
        self.encoder = ChunkEncoder(tuple(z.shape), tuple(z.chunks), dtype, numcodec(z))
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
            attributes=L.jsonable(attrs or {}),
            config=L.ARRAY_CONFIG,
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
        meta = {**w.meta["attributes"].get("maxrf", {}), **L.jsonable(extra.pop("maxrf", {}))}
        w.meta["attributes"].update(L.jsonable(extra))
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
            meta.setdefault("created", L.utc_now())
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


def _is_dask(arr: Any) -> bool:
    """A dask array? (Without importing dask: none can exist before dask.array is imported.)"""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(arr, da.Array)


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
