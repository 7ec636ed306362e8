"""Bruker Crono scans: one HDF5 file (the layout the ``cronomaxrf`` package reads).

``/XRF/Spectra`` holds only the measured spectra (n_spectra × channels), ``/XRF/EnergyVector``
the energy of each channel (keV), and ``/XRF/SpectraSelectedIndex`` (height × width × k) the row
of ``/XRF/Spectra`` of each pixel (first plane; a negative index: a pixel that was not measured,
read as zeros and listed as missing; an index past the spectra: a damaged file, refused). The
cube is gathered block by block (sorted reads of the rows a block needs), so memory stays bounded
whatever the scan size.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from maxrf.errors import HeaderError, ScanNotFoundError
from maxrf.io.cube import CubeFile
from maxrf.io.rpl import EnergyCalibration, RplHeader

SPECTRA, ENERGIES, INDEX = "/XRF/Spectra", "/XRF/EnergyVector", "/XRF/SpectraSelectedIndex"
SUFFIXES = (".hdf5", ".h5", ".hdf")
CHUNK_CACHE_BYTES = 64 << 20  # per reading thread
# per thread: {file version: open h5py.File}; a thread's handle closes with the thread (a
# worker pool's threads come and go; a dict keyed by thread id would keep every one open)
_HANDLES = threading.local()
_FDS: dict[tuple, int] = {}  # {file version: a descriptor for positioned reads} (thread-safe)
_FDS_LOCK = threading.Lock()


def _h5py():
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is a dependency
        raise HeaderError("reading Crono HDF5 files needs h5py (pip install h5py)") from None
    return h5py


def is_crono(path: str | Path) -> bool:
    """Whether ``path`` names an HDF5 file (by its suffix): a Crono scan to open as one."""
    return Path(path).suffix.lower() in SUFFIXES


@dataclass(frozen=True)
class CronoFile(CubeFile):
    """A Crono file presenting (height, width, channels), read like a ``RawFile``."""

    def _open(self):
        """The file, opened once per thread (h5py handles are not shared across threads) with
        a chunk cache that holds a row of blocks' chunks: each chunk is then read once."""
        import contextlib

        local = _HANDLES.__dict__.setdefault("files", {})
        st = Path(self.path).stat()
        key = (self.path, st.st_size, st.st_mtime_ns)
        if key not in local:
            for f in local.values():
                f.close()
            local.clear()
            local[key] = _h5py().File(self.path, "r", rdcc_nbytes=CHUNK_CACHE_BYTES,
                                      rdcc_nslots=100_003)
        return contextlib.nullcontext(local[key])

    def read_block(self, rows: slice, cols: slice, out: np.ndarray | None = None) -> np.ndarray:
        """Pixels ``[rows, cols]`` with all channels (missing pixels: zeros), into ``out``."""
        h = self.header
        r0, r1, _ = rows.indices(h.height)
        c0, c1, _ = cols.indices(h.width)
        shape = (max(r1 - r0, 0), max(c1 - c0, 0), h.depth)
        if out is None:
            out = np.empty(shape, dtype=h.dtype)
        elif out.shape != shape or out.dtype != h.dtype:
            raise ValueError(f"out must be {shape} {h.dtype}, not {out.shape} {out.dtype}")
        index = self.plane[r0:r1, c0:c1].reshape(-1)
        layout = self.layout
        if layout is not None:  # no HDF5 call at all
            self._fill(_Positioned(self._fd(), *layout), index, out.reshape(-1, h.depth))
        else:
            with self._open() as f:
                self._fill(_Through(f[SPECTRA]), index, out.reshape(-1, h.depth))
        return out

    def _fill(self, read, index: np.ndarray, flat: np.ndarray) -> None:
        """``flat[i]`` = the spectrum of pixel ``index[i]``, zeros where it was not measured."""
        valid = (index >= 0) & (index < self.spectra)
        if valid.all():
            _gather(read, index, flat)
        elif valid.any():
            flat[~valid] = 0
            where = np.flatnonzero(valid)
            part = np.empty((where.size, flat.shape[1]), flat.dtype)
            _gather(read, index[where], part)
            flat[where] = part
        else:
            flat[:] = 0

    def __getstate__(self) -> dict:
        """Pickled (to dask workers) without what it caches: the index plane, the layout."""
        return {"path": self.path, "header": self.header}

    @cached_property
    def plane(self) -> np.ndarray:
        """Each pixel's row of ``/XRF/Spectra`` (the index map's first plane), read once: 4-8
        bytes a pixel, so each block needs no HDF5 call for it."""
        with self._open() as f:
            plane = f[INDEX]
            first = plane[:, :, 0] if plane.ndim == 3 else plane[...]
        kind = np.int32 if self.spectra < 2**31 else np.int64
        return np.ascontiguousarray(first, dtype=kind)

    @cached_property
    def spectra(self) -> int:
        """How many spectra ``/XRF/Spectra`` holds."""
        with self._open() as f:
            return int(f[SPECTRA].shape[0])

    @cached_property
    def layout(self) -> tuple[int, int, np.ndarray] | None:
        """(bytes per spectrum, spectra per chunk, file offset of each chunk) when
        ``/XRF/Spectra`` can be read with positioned reads, outside HDF5 (and its global lock,
        so threads read in parallel as from a ``.raw``): stored without filters, in the
        reader's byte order, whole spectra per chunk (or contiguous), every chunk written.
        None: read through h5py."""
        with self._open() as f:
            d = f[SPECTRA]
            n, c = d.shape
            if (d.dtype != self.header.dtype or d.id.get_create_plist().get_nfilters()
                    or (d.chunks is not None and d.chunks[1] != c)):
                return None
            row = c * d.dtype.itemsize
            if d.chunks is None:
                base = d.id.get_offset()
                return None if base is None else (row, max(n, 1), np.array([base], np.int64))
            per = d.chunks[0]
            offsets = np.full(-(-n // per), -1, np.int64)

            def note(info) -> None:
                offsets[info.chunk_offset[0] // per] = info.byte_offset

            if hasattr(d.id, "chunk_iter"):  # HDF5 >= 1.12.3: one pass over the chunk index
                d.id.chunk_iter(note)
            else:  # one lookup per chunk: ~0.1 ms each
                for i in range(d.id.get_num_chunks()):
                    note(d.id.get_chunk_info(i))
            return None if (offsets < 0).any() else (row, per, offsets)

    def _fd(self) -> int:
        """A read-only descriptor of the file, one per process and file version."""
        st = Path(self.path).stat()
        key = (self.path, st.st_size, st.st_mtime_ns)
        with _FDS_LOCK:
            if key not in _FDS:
                for old in [k for k in _FDS if k[0] == self.path]:
                    os.close(_FDS.pop(old))
                _FDS[key] = os.open(self.path, os.O_RDONLY)
            return _FDS[key]

    def prefetch(self, rows: slice, cols: slice | None = None) -> None:
        """Ask the kernel to start reading the chunks that hold pixels ``[rows, cols]``
        (merged into extents of consecutive chunks) while the previous block is being
        encoded, as the Ripple reader does; skipped when they are scattered over much more
        of the file than the block's own size (a random order) or read through h5py."""
        advise = getattr(os, "posix_fadvise", None)
        layout = self.layout
        if advise is None or layout is None:
            return
        row, per, offsets = layout
        index = self.plane[rows, cols or slice(None)].reshape(-1)
        index = index[(index >= 0) & (index < self.spectra)]
        if not index.size:
            return
        chunks = np.unique(index // per)
        if chunks.size * per > 4 * index.size:
            return
        starts = np.sort(offsets[chunks])
        size = per * row
        new = np.r_[True, starts[1:] != starts[:-1] + size]
        first = starts[new]
        last = np.r_[starts[np.flatnonzero(new)[1:] - 1], starts[-1]] + size
        fd = self._fd()
        try:
            for a, b in zip(first.tolist(), last.tolist(), strict=True):
                advise(fd, a, b - a, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass

    @cached_property
    def missing(self) -> np.ndarray:
        """(row, col) of every pixel that was not measured."""
        return np.argwhere((self.plane < 0) | (self.plane >= self.spectra))


class _Through:
    """Rows of ``/XRF/Spectra`` read through h5py."""

    def __init__(self, spectra) -> None:
        self.spectra = spectra

    def rows(self, first: int, last: int, out: np.ndarray) -> None:
        """Rows ``first..last`` (ascending, inclusive) into ``out``."""
        self.spectra.read_direct(out, np.s_[first : last + 1], np.s_[0 : out.shape[0]])

    def points(self, index: np.ndarray, out: np.ndarray) -> None:
        """``out[i] = row index[i]`` for scattered rows: one sorted point selection."""
        wanted, where = np.unique(index, return_inverse=True)
        np.take(self.spectra[wanted], where, axis=0, out=out)


class _Positioned:
    """Rows of ``/XRF/Spectra`` read with positioned reads at their chunks' file offsets."""

    def __init__(self, fd: int, row: int, per: int, offsets: np.ndarray) -> None:
        self.fd, self.row, self.per, self.offsets = fd, row, per, offsets

    def _read(self, offset: int, buf: memoryview) -> None:
        got = os.preadv(self.fd, [buf], offset)
        while got < len(buf):  # a short read: the rest
            if got <= 0:
                raise HeaderError("the Crono file ends inside its spectra", None)
            buf, offset = buf[got:], offset + got
            got = os.preadv(self.fd, [buf], offset)

    def rows(self, first: int, last: int, out: np.ndarray) -> None:
        """Rows ``first..last`` (ascending, inclusive) into ``out``: one read per extent of
        chunks that follow each other in the file (usually the whole run)."""
        buf = memoryview(out).cast("B")
        pos, r = 0, first
        chunk_bytes = self.per * self.row
        while r <= last:
            chunk = r // self.per
            start = int(self.offsets[chunk]) + (r - chunk * self.per) * self.row
            end = min(last + 1, (chunk + 1) * self.per)
            while end <= last and int(self.offsets[chunk + 1]) == int(
                    self.offsets[chunk]) + chunk_bytes:
                chunk += 1
                end = min(last + 1, (chunk + 1) * self.per)
            size = (end - r) * self.row
            self._read(start, buf[pos : pos + size])
            pos, r = pos + size, end

    def points(self, index: np.ndarray, out: np.ndarray) -> None:
        """``out[i] = row index[i]`` for scattered rows: one read each, in file order."""
        order = np.argsort(index, kind="stable")  # in file order: the reads go forward
        for i, r in zip(order.tolist(), index[order].tolist(), strict=True):
            self.rows(r, r, out[i : i + 1])


def _gather(read, index: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = spectra[index[i]]`` (every index valid; ``read``: :class:`_Positioned` or
    :class:`_Through`). A scan stores its spectra in scan order, so the pixels of a block are a
    few runs of consecutive rows, ascending or (a serpentine scan's return rows) descending:
    each run is read straight into ``out``. Scattered rows: read one by one."""
    n = index.size
    new = np.ones(n, np.bool_)  # where a run starts
    if n > 1:
        step = np.diff(index)
        bad = (step != 1) & (step != -1)
        turn = np.zeros(n - 1, np.bool_)  # the direction changes between two ±1 steps
        turn[1:] = (step[1:] != step[:-1]) & ~bad[1:] & ~bad[:-1]
        new[1:] = bad | turn
    starts = np.flatnonzero(new)
    stops = np.r_[starts[1:], n]
    if starts.size > index.size // 4:  # scattered
        read.points(index, out)
        return
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        first, last = int(index[a]), int(index[b - 1])
        if first <= last:
            read.rows(first, last, out[a:b])
        else:  # descending (a serpentine scan's return row): read ascending, then reversed
            read.rows(last, first, out[a:b])  # in place (a copy of a few hundred kB costs
            out[a:b] = out[a:b][::-1].copy()  # less than a read per spectrum)


def read_crono_header(path: str | Path) -> tuple[RplHeader, dict]:
    """The cube's shape, dtype and energy axis as an :class:`RplHeader` (record-by vector), and
    the file's metadata (``/XRF`` attributes and the energy vector's linearity)."""
    path = Path(path)
    if not path.exists():
        raise ScanNotFoundError("Crono file not found", path)
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as f:
            for name in (SPECTRA, ENERGIES, INDEX):
                if name not in f:
                    raise HeaderError(f"not a Crono MA-XRF file (no {name})", path)
            spectra, index = f[SPECTRA], f[INDEX]
            energies = np.asarray(f[ENERGIES][...], dtype=np.float64).reshape(-1)
            if spectra.ndim != 2 or index.ndim not in (2, 3):
                raise HeaderError(f"{SPECTRA} must be spectra × channels and {INDEX} height × "
                                  f"width (× k), got {spectra.shape} and {index.shape}", path)
            n, channels = spectra.shape
            height, width = index.shape[:2]
            first = index[:, :, 0] if index.ndim == 3 else index[:, :]
            top = int(np.max(first)) if first.size else -1
            if top >= n:
                raise HeaderError(f"{INDEX} points past the {n} spectra (to row {top})", path)
            dtype = np.dtype(spectra.dtype).newbyteorder("<")
            meta = {k: _plain(v) for k, v in f["/XRF"].attrs.items()}
    except OSError as exc:  # truncated or not HDF5 at all
        why = " ".join(str(exc).split())[:160]
        raise HeaderError(f"unreadable HDF5 file ({why})", path) from None
    if energies.size != channels:
        raise HeaderError(f"{ENERGIES} has {energies.size} values for {channels} channels", path)
    if dtype.kind not in "uif":
        raise HeaderError(f"{SPECTRA} holds {dtype}, not numbers", path)
    ch = np.arange(channels, dtype=np.float64)
    gain, offset = np.polyfit(ch, energies, 1) if channels > 1 else (1.0, float(energies[0]))
    nonlinear = float(np.max(np.abs(offset + gain * ch - energies))) if channels > 1 else 0.0
    kinds = {"u": "unsigned", "i": "signed", "f": "float"}
    header = RplHeader(
        path=path, width=width, height=height, depth=channels, offset=0,
        data_length=dtype.itemsize, data_type=kinds[dtype.kind], byte_order="little-endian",
        record_by="vector", energy=EnergyCalibration(float(offset), float(gain)),
    )
    meta.update({"format": "crono-hdf5", "spectra_measured": int(n),
                 "energy_vector_nonlinearity_kev": nonlinear})
    return header, meta


def _plain(value):
    """An HDF5 attribute as JSON-able Python (byte strings decoded, arrays of one unwrapped)."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    arr = np.asarray(value)
    if arr.dtype.kind == "S":
        return b"".join(arr.reshape(-1).tolist()).decode(errors="replace")
    if arr.size == 1:
        return arr.reshape(-1)[0].item()
    return arr.tolist() if arr.size <= 64 else f"array {arr.shape} {arr.dtype}"
