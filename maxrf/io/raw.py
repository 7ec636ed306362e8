"""Lazy, out-of-core access to a ``.raw`` scan as a (height, width, channels) dask array."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from maxrf.errors import HeaderError, RawSizeError, ScanNotFoundError
from maxrf.io.cube import CubeFile
from maxrf.io.rpl import RplHeader, read_rpl

if TYPE_CHECKING:
    import dask.array as da

_HEADER_SUFFIXES = (".rpl", ".RPL", ".Rpl")
_RAW_SUFFIXES = (".raw", ".RAW", ".Raw")


def _sibling(path: Path, suffixes: tuple[str, ...]) -> Path | None:
    for suffix in suffixes:
        candidate = path.with_suffix(suffix)
        if candidate.exists():
            return candidate
    return None


def scan_paths(path: str | Path, rpl_path: str | Path | None = None) -> tuple[Path, Path]:
    """Resolve ``(raw, rpl)`` from either file of a scan pair (the other is found by name)."""
    path = Path(path)
    if path.suffix.lower() == ".rpl" and rpl_path is None:
        raw = _sibling(path, _RAW_SUFFIXES) or path.with_suffix(".raw")
        return raw, path
    raw = path
    if rpl_path is not None:
        return raw, Path(rpl_path)
    if not raw.exists():
        raise ScanNotFoundError("raw file not found", raw)
    rpl = _sibling(raw, _HEADER_SUFFIXES)
    if rpl is None:
        raise ScanNotFoundError("no .rpl header found beside the raw file", raw)
    return raw, rpl


def check_raw_size(header: RplHeader, raw: Path) -> int:
    """The raw file's size; ``RawSizeError`` unless it is exactly what the header says."""
    if not raw.exists():
        raise ScanNotFoundError("raw file not found", raw)
    if raw.is_dir():
        raise ScanNotFoundError("is a directory, not a .raw file", raw)
    actual = raw.stat().st_size
    expected = header.raw_bytes_expected
    if actual != expected:
        what = (
            "the scan looks incomplete (still being written or truncated)"
            if actual < expected
            else "the file is longer than the header describes"
        )
        raise RawSizeError(
            f"size is {actual} bytes but the header expects {expected} "
            f"(offset {header.offset} + {header.height}x{header.width}x{header.depth} x "
            f"{header.data_length} bytes): {what}",
            raw,
        )
    return actual


@dataclass(frozen=True)
class Scan:
    """An opened scan: its two files and its header, the ``.raw`` size checked exactly."""

    raw: Path
    rpl: Path
    header: RplHeader

    def fingerprint(self, mode: str = "quick") -> str:
        """The scan's identity for caching (``quick`` or ``full``; see ``maxrf.io.fingerprint``)."""
        from maxrf.io.fingerprint import scan_fingerprint

        return scan_fingerprint(self.raw, self.rpl, mode)

    def key(self, mode: str = "quick") -> str:
        """The upstream key of the first step (``scan-<fingerprint>``)."""
        return "scan-" + self.fingerprint(mode)

    def file(self) -> RawFile:
        """Positioned-read access to the counts (picklable; no memmap)."""
        return RawFile(str(self.raw), self.header)

    @property
    def metadata(self) -> dict:
        """What the file says besides the cube (a Crono file's tube, live time …)."""
        return {"format": "ripple"}


@dataclass(frozen=True)
class FileScan(Scan):
    """A scan in one file (Bruker Crono HDF5, ``.bcf``, ``.spx``): ``raw`` and ``rpl`` are that
    file, ``meta`` what it says besides the counts (``format`` names the reader)."""

    meta: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return str(self.meta.get("format", "file")).split("-")[0]  # crono, bruker

    def fingerprint(self, mode: str = "quick") -> str:
        """One file: its content's fingerprint (sampled blocks, or every byte with ``full``)."""
        from maxrf.io.fingerprint import file_fingerprint

        return f"{self.kind}-" + file_fingerprint(self.raw, mode)

    def file(self):
        if self.kind == "bruker":
            from maxrf.io.bruker import BrukerFile

            return BrukerFile(str(self.raw), self.header)
        from maxrf.io.crono import CronoFile

        return CronoFile(str(self.raw), self.header)

    @property
    def metadata(self) -> dict:
        return dict(self.meta)


def read_one_file_header(path: str | Path) -> tuple[RplHeader, dict] | None:
    """The header and metadata of a one-file scan (by suffix: ``.hdf5``/``.h5``/``.hdf`` Crono,
    ``.bcf``/``.spx`` Bruker), or None for a Ripple pair."""
    from maxrf.io.bruker import is_bruker, read_bruker_header
    from maxrf.io.crono import is_crono, read_crono_header

    if is_crono(path):
        return read_crono_header(path)
    if is_bruker(path):
        return read_bruker_header(path)
    return None


def open_scan(path: str | Path, rpl_path: str | Path | None = None) -> Scan:
    """The one entry point to a scan: a Ripple pair (found from either file; the header parsed
    and the ``.raw`` size checked exactly), a Crono HDF5 file (``.hdf5``/``.h5``) or a Bruker
    ``.bcf``/``.spx``. ``MaxrfError`` subclasses name the file when it is not right."""
    one_file = read_one_file_header(path)
    if one_file is not None:
        header, meta = one_file
        return FileScan(Path(path), Path(path), header, meta)
    raw, rpl = scan_paths(path, rpl_path)
    header = read_rpl(rpl)
    if header.depth_axis is not None and header.energy is None:
        raise HeaderError(f"the depth axis is not energy (units {header.depth_axis['units']}): "
                          "not an XRF spectrum cube", rpl)
    check_raw_size(header, raw)
    return Scan(raw, rpl, header)


@dataclass(frozen=True)
class RawFile(CubeFile):
    """A picklable array-like over a ``.raw`` file presenting (height, width, channels).

    Holds only the path and header, so dask workers in other processes read the file themselves
    instead of receiving data. Image-ordered files are gathered per block into pixel order.
    """

    def read_block(self, rows: slice, cols: slice, out: np.ndarray | None = None) -> np.ndarray:
        """Pixels ``[rows, cols]`` with all channels, read with positioned reads (no memmap, so
        virtual memory stays small whatever the file size), into ``out`` when given."""
        h = self.header
        r0, r1, _ = rows.indices(h.height)
        c0, c1, _ = cols.indices(h.width)
        nr, nc, item = max(r1 - r0, 0), max(c1 - c0, 0), h.dtype.itemsize
        if out is None:
            out = np.empty((nr, nc, h.depth), dtype=h.dtype)
        elif out.shape != (nr, nc, h.depth) or out.dtype != h.dtype:
            raise ValueError(
                f"out must be {(nr, nc, h.depth)} {h.dtype}, not {out.shape} {out.dtype}"
            )
        with open(self.path, "rb", buffering=0) as f:
            fd = f.fileno()
            if h.record_by in ("vector", "dont-care"):
                for i in range(nr):
                    start = h.offset + ((r0 + i) * h.width + c0) * h.depth * item
                    _pread_into(fd, out[i], start)
            else:  # image: one plane per channel
                plane = h.height * h.width * item
                for ch in range(h.depth):
                    for i in range(nr):
                        start = h.offset + ch * plane + ((r0 + i) * h.width + c0) * item
                        _pread_into(fd, out[i, :, ch], start)
        return out

    def prefetch(self, rows: slice, cols: slice | None = None) -> None:
        """Ask the kernel to start reading pixels ``[rows, cols]`` in the background (pixel-
        ordered files; a no-op elsewhere), so later reads of them wait less for the disk."""
        h = self.header
        advise = getattr(os, "posix_fadvise", None)
        if advise is None or h.record_by not in ("vector", "dont-care"):
            return
        r0, r1, _ = rows.indices(h.height)
        c0, c1, _ = (cols or slice(None)).indices(h.width)
        if r1 <= r0 or c1 <= c0:
            return
        pixel = h.depth * h.dtype.itemsize
        start = h.offset + (r0 * h.width + c0) * pixel
        end = h.offset + ((r1 - 1) * h.width + c1) * pixel
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return
        try:
            advise(fd, start, end - start, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
        finally:
            os.close(fd)

    def __getitem__(self, key) -> np.ndarray:
        """numpy indexing; only the rows and columns the key spans are read (an integer, a
        strided slice or an index list never reads the whole scan)."""
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = key[:i] + (slice(None),) * (4 - len(key)) + key[i + 1 :]
        if len(key) > 3:
            raise IndexError(f"too many indices for a 3-d scan: {len(key)}")
        key = key + (slice(None),) * (3 - len(key))
        rows, local_r = _span(key[0], self.shape[0])
        cols, local_c = _span(key[1], self.shape[1])
        return self.read_block(rows, cols)[local_r, local_c, key[2]]


def _span(k, n: int) -> tuple[slice, Any]:
    """The contiguous range an index ``k`` of an axis of length ``n`` needs, and the index to
    apply to that range to get the same result."""
    if isinstance(k, (int, np.integer)):
        i = int(k) + n if int(k) < 0 else int(k)
        if not 0 <= i < n:
            raise IndexError(f"index {int(k)} is out of bounds for an axis of size {n}")
        return slice(i, i + 1), 0
    if isinstance(k, slice):
        start, stop, step = k.indices(n)
        lo, hi = (start, stop) if step > 0 else (stop + 1, start + 1)
        if hi <= lo:
            return slice(0, 0), slice(None)
        return slice(lo, hi), slice(None, None, step)
    idx = np.asarray(k)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise IndexError(f"boolean index of shape {idx.shape} for an axis of size {n}")
        idx = np.flatnonzero(idx)
    idx = np.where(idx < 0, idx + n, idx).astype(np.int64)
    if idx.size == 0:
        return slice(0, 0), idx
    if idx.min() < 0 or idx.max() >= n:
        raise IndexError(f"index out of bounds for an axis of size {n}")
    return slice(int(idx.min()), int(idx.max()) + 1), idx - idx.min()


def _pread_into(fd: int, out: np.ndarray, offset: int) -> None:
    """Fill ``out`` (contiguous or strided) from ``offset`` of ``fd``."""
    if out.flags.c_contiguous:
        view = memoryview(out.reshape(-1).view(np.uint8))
        done = 0
        while done < view.nbytes:
            n = os.preadv(fd, [view[done:]], offset + done)
            if n <= 0:
                raise OSError(f"unexpected end of file at byte {offset + done}")
            done += n
    else:
        tmp = np.empty(out.shape, out.dtype)
        _pread_into(fd, tmp, offset)
        out[...] = tmp


def default_chunks(header: RplHeader, target_bytes: int = 64 * 2**20) -> tuple[int, int, int]:
    """Row blocks of full width and all channels of about ``target_bytes`` each."""
    row_bytes = header.width * header.depth * header.data_length
    rows = max(1, min(header.height, target_bytes // max(row_bytes, 1)))
    cols = header.width
    if rows == 1 and row_bytes > target_bytes:  # very wide scans: split columns too
        cols = max(1, target_bytes // (header.depth * header.data_length))
    return (rows, cols, header.depth)


def open_raw(
    raw_path: str | Path,
    rpl_path: str | Path | None = None,
    chunks: tuple[int, int, int] | None = None,
) -> da.Array:
    """Open a scan lazily as a dask array of shape (height, width, channels) in its own dtype.

    The header is found beside the raw by name (``.rpl``/``.RPL``) unless given. The raw size is
    checked exactly against the header; nothing is read until the array is computed.
    """
    scan = open_scan(raw_path, rpl_path)
    return raw_array(scan.raw, scan.header, chunks)


def raw_array(raw: Path, header: RplHeader, chunks: tuple[int, int, int] | None = None) -> da.Array:
    """The dask array of an already validated scan."""
    import dask.array as da
    from dask.base import tokenize

    chunks = chunks or default_chunks(header)
    if any(c < 1 for c in chunks):
        raise HeaderError(f"invalid chunk shape {chunks}", raw)
    stat = raw.stat()
    name = "maxrf-raw-" + tokenize(
        str(raw.resolve()), stat.st_size, stat.st_mtime_ns, header, chunks
    )
    return da.from_array(
        RawFile(str(raw), header), chunks=chunks, name=name, fancy=False, asarray=False
    )
