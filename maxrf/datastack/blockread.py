"""Blocks of a spectra layer read straight from the datastack's zip, for whole passes.

zarr reads a chunk through its asyncio codec pipeline: for the 16 × 16 × 4096 blosc chunks of
``maxrf_raw`` that costs 5.9-7.2 µs per spectrum, of which decoding is 1.9 µs. A pass that fits
or sums every pixel reads each chunk once, so here the committed chunks of a layer whose codecs
are plain ``bytes`` + ``blosc`` (what maxrf writes) are read with ``os.pread`` from their zip
entries (CRC-checked, as zipfile does), decoded by numcodecs' Blosc into a reused buffer and
copied into the block; anything else (another codec chain, sharding, a missing chunk, a zip entry
that is not stored) is read through zarr, so the answer is always zarr's.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from typing import TYPE_CHECKING

import numpy as np

from maxrf.scratch import thread_buffer

if TYPE_CHECKING:
    from maxrf.datastack.store import DataStack

_LOCAL = struct.Struct("<4s22xHH")  # a zip local header: signature … name and extra lengths


class BlockReader:
    """``read(r0, r1, c0, c1)`` → the layer's ``[r0:r1, c0:c1, :]`` (a 3-D spectra layer)."""

    def __init__(self, ds: DataStack, name: str, latest: bool = True) -> None:
        self.array = ds.array(name, latest)
        snap = ds.snapshot()
        self.key = ds.latest(name) if latest else name
        self.shape = tuple(self.array.shape)
        self.chunks = tuple(self.array.chunks)
        self.dtype = self.array.dtype
        self.codec = self._blosc(self.array)
        self._fileobj = snap.fileobj
        self._entries: dict[str, tuple[int, int, int] | None] = {}
        self._infos = None
        if (self.codec is not None and len(self.shape) == 3 and self.chunks[2] == self.shape[2]
                and _has_fd(self._fileobj)):  # not a recovery view of a file being appended to
            # the directory zarr's store parsed (shared per file version)
            self._infos = getattr(getattr(self.array.store, "_zf", None), "NameToInfo", None)

    @staticmethod
    def _blosc(array):
        """numcodecs' Blosc for the layer's codecs when they are exactly bytes (little-endian or
        one-byte items) + blosc, with the default chunk keys; else None."""
        from zarr.codecs import BloscCodec, BytesCodec

        meta = array.metadata
        codecs = list(getattr(meta, "codecs", ()))
        enc = getattr(meta, "chunk_key_encoding", None)
        if (len(codecs) != 2 or not isinstance(codecs[0], BytesCodec)
                or not isinstance(codecs[1], BloscCodec)
                or getattr(enc, "name", None) != "default"
                or getattr(enc, "separator", None) != "/"):
            return None
        endian = getattr(codecs[0].endian, "value", codecs[0].endian)
        if array.dtype.itemsize > 1 and endian not in ("little", None):
            return None
        from numcodecs import Blosc

        return Blosc()  # decoding reads cname, shuffle and typesize from each chunk's header

    @property
    def fast(self) -> bool:
        """Whether blocks come straight from the zip (else through zarr)."""
        return self._infos is not None

    def _entry(self, name: str) -> tuple[int, int, int] | None:
        """(data offset, size, CRC) of a stored zip entry, or None (read through zarr)."""
        if name not in self._entries:
            info = self._infos.get(name)
            found = None
            if info is not None and info.compress_type == zipfile.ZIP_STORED:
                head = os.pread(self._fileobj.fileno(), _LOCAL.size, info.header_offset)
                if len(head) == _LOCAL.size:
                    sig, n, extra = _LOCAL.unpack(head)
                    if sig == b"PK\x03\x04":
                        found = (info.header_offset + _LOCAL.size + n + extra, info.file_size,
                                 info.CRC)
            self._entries[name] = found
        return self._entries[name]

    def spectra(self, r0: int, r1: int, c0: int, c1: int, out: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """The block's spectra as rows of a (n, depth) array in the order cheapest to read, and
        for each pixel of the block in raster order its row: ``spectra[order]`` is
        ``read(...).reshape(-1, depth)``. From the zip each whole chunk is decoded in place
        (no copy; a chunk past the array's edge brings its padding rows, never indexed)."""
        depth = self.shape[2]
        ch, cw = self.chunks[:2]
        if not self.fast or r0 % ch or c0 % cw:
            block = self.read(r0, r1, c0, c1, None if out is None else _view(
                out, (r1 - r0, c1 - c0, depth)))
            return block.reshape(-1, depth), np.arange((r1 - r0) * (c1 - c0))
        rows, cols = range(r0 // ch, (r1 - 1) // ch + 1), range(c0 // cw, (c1 - 1) // cw + 1)
        n = len(rows) * len(cols)
        need = n * ch * cw * depth
        if out is None or out.size < need or out.dtype != self.dtype:
            out = np.empty(need, self.dtype)
        chunks = out.reshape(-1)[:need].reshape(n, ch, cw, depth)
        for k, (i, j) in enumerate((i, j) for i in rows for j in cols):
            self._decode(i, j, chunks[k])
        # raster pixel (r, c) of the block lies in chunk k at (r mod ch, c mod cw)
        rr, cc = np.mgrid[r0:r1, c0:c1]
        k = (rr // ch - rows[0]) * len(cols) + (cc // cw - cols[0])
        order = ((k * ch + rr % ch) * cw + cc % cw).ravel()
        return chunks.reshape(-1, depth), order

    def _decode(self, i: int, j: int, into: np.ndarray) -> np.ndarray:
        """Chunk (i, j) into ``into`` (a whole chunk's shape): from its zip entry when it is
        stored and its CRC holds, else through zarr, which raises on a damaged or missing chunk
        as every read does (the part past the array's edge is then left as it was)."""
        ch, cw = self.chunks[:2]
        where = self._entry(f"{self.key}/c/{i}/{j}/0") if self.fast else None
        data = (os.pread(self._fileobj.fileno(), where[1], where[0]) if where is not None
                else None)
        if data is None or len(data) != where[1] or zlib.crc32(data) != where[2]:
            a1, b1 = min((i + 1) * ch, self.shape[0]), min((j + 1) * cw, self.shape[1])
            into[: a1 - i * ch, : b1 - j * cw] = self.array[i * ch : a1, j * cw : b1]
        else:
            self.codec.decode(data, out=into)
        return into

    def _chunk(self, i: int, j: int) -> np.ndarray:
        """Chunk (i, j) decoded into this thread's buffer."""
        ch, cw = self.chunks[:2]
        return self._decode(i, j, thread_buffer("blockread", (ch, cw, self.shape[2]),
                                                self.dtype))

    def sum(self, r0: int, r1: int, c0: int, c1: int, threads: int = 2) -> np.ndarray:
        """The summed spectrum of the pixels ``[r0:r1, c0:c1]`` (uint64), chunk by chunk over
        ``threads`` threads: no block is assembled (a 16-row strip of a real scan is 200 MB)."""
        from concurrent.futures import ThreadPoolExecutor

        ch, cw = self.chunks[:2]
        parts = [(i, j) for i in range(r0 // ch, (r1 - 1) // ch + 1)
                 for j in range(c0 // cw, (c1 - 1) // cw + 1)] if r1 > r0 and c1 > c0 else []

        def one(ij: tuple[int, int]) -> np.ndarray:
            i, j = ij
            chunk = self._chunk(i, j)
            a0, a1 = max(r0, i * ch) - i * ch, min(r1, (i + 1) * ch) - i * ch
            b0, b1 = max(c0, j * cw) - j * cw, min(c1, (j + 1) * cw) - j * cw
            return chunk[a0:a1, b0:b1].sum(axis=(0, 1), dtype=np.uint64)

        total = np.zeros(self.shape[2], np.uint64)
        if len(parts) <= 1 or threads <= 1:
            for ij in parts:
                total += one(ij)
            return total
        with ThreadPoolExecutor(threads) as pool:
            for part in pool.map(one, parts):
                total += part
        return total

    def channel_sums(self, ranges: list[tuple[int, int]], threads: int = 2) -> np.ndarray:
        """Per pixel (height × width, uint32), the counts of the channels in ``ranges``
        (``[lo, hi)`` pairs), from one read of every chunk."""
        from concurrent.futures import ThreadPoolExecutor

        h, w = self.shape[:2]
        ch, cw = self.chunks[:2]
        out = np.zeros((h, w), np.uint32)
        ranges = [(a, b) for a, b in ranges if b > a]

        def one(ij: tuple[int, int]) -> None:
            i, j = ij
            chunk = self._chunk(i, j)
            a1, b1 = min((i + 1) * ch, h) - i * ch, min((j + 1) * cw, w) - j * cw
            part = out[i * ch : i * ch + a1, j * cw : j * cw + b1]  # this chunk's own pixels
            for lo, hi in ranges:
                part += chunk[:a1, :b1, lo:hi].sum(axis=-1, dtype=np.uint32)

        if ranges:
            parts = [(i, j) for i in range(-(-h // ch)) for j in range(-(-w // cw))]
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(one, parts))
        return out

    def read(self, r0: int, r1: int, c0: int, c1: int, out: np.ndarray | None = None
             ) -> np.ndarray:
        """The block ``[r0:r1, c0:c1, :]`` (into ``out`` when given: a reused buffer)."""
        depth = self.shape[2]
        shape = (r1 - r0, c1 - c0, depth)
        if out is None or out.shape != shape or out.dtype != self.dtype:
            out = np.empty(shape, self.dtype)
        if not self.fast:
            out[...] = self.array[r0:r1, c0:c1, :]
            return out
        ch, cw = self.chunks[:2]
        for i in range(r0 // ch, (r1 - 1) // ch + 1):
            for j in range(c0 // cw, (c1 - 1) // cw + 1):
                a0, a1 = max(r0, i * ch), min(r1, (i + 1) * ch)
                b0, b1 = max(c0, j * cw), min(c1, (j + 1) * cw)
                out[a0 - r0 : a1 - r0, b0 - c0 : b1 - c0] = self._chunk(i, j)[
                    a0 - i * ch : a1 - i * ch, b0 - j * cw : b1 - j * cw]
        return out


def _view(buf: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``buf``'s first elements as an array of ``shape`` (None when it is too small)."""
    n = int(np.prod(shape))
    return buf.reshape(-1)[:n].reshape(shape) if buf.size >= n else None


def _has_fd(fileobj) -> bool:
    """Whether ``fileobj`` is a file with a descriptor to ``pread`` from."""
    try:
        return isinstance(fileobj.fileno(), int)
    except (AttributeError, OSError, ValueError):
        return False
