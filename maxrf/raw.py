"""Lazy, out-of-core access to a ``.raw`` scan as a (height, width, channels) dask array."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
from dask.base import tokenize

from .errors import HeaderError, RawSizeError, ScanNotFoundError
from .rpl import RplHeader, read_rpl

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
class RawFile:
    """A picklable array-like over a ``.raw`` file presenting (height, width, channels).

    Opens a read-only memmap on each access (cheap), so dask workers in other processes read the
    file themselves instead of receiving data. Image-ordered files are transposed per block.
    """

    path: str
    header: RplHeader

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.header.shape

    @property
    def dtype(self) -> np.dtype:
        return self.header.dtype

    @property
    def ndim(self) -> int:
        return 3

    def _memmap(self) -> np.ndarray:
        h = self.header
        disk_shape = {
            "vector": (h.height, h.width, h.depth),
            "image": (h.depth, h.height, h.width),
            "dont-care": (h.height, h.width),
        }[h.record_by]
        return np.memmap(self.path, dtype=h.dtype, mode="r", offset=h.offset, shape=disk_shape)

    def __getitem__(self, key) -> np.ndarray:
        rows, cols, chans = key if isinstance(key, tuple) else (key, slice(None), slice(None))
        mm = self._memmap()
        if self.header.record_by == "vector":
            block = mm[rows, cols, chans]
        elif self.header.record_by == "image":
            block = np.moveaxis(mm[chans, rows, cols], 0, -1)
        else:
            block = mm[rows, cols][..., None][..., chans]
        return np.array(block)  # copy out of the memmap (and close it)


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
    raw, rpl = scan_paths(raw_path, rpl_path)
    header = read_rpl(rpl)
    check_raw_size(header, raw)
    return raw_array(raw, header, chunks)


def raw_array(raw: Path, header: RplHeader, chunks: tuple[int, int, int] | None = None) -> da.Array:
    """The dask array of an already validated scan."""
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
