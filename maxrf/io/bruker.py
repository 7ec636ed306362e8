"""Bruker ``.bcf`` hypermaps (M4 Tornado, electron-microscope EDS) and ``.spx`` single spectra,
read through rosettasciio (the optional ``bruker`` extra: ``pip install 'maxrf[bruker]'``).

A ``.bcf`` stores its hypermap packed and compressed in Bruker's SFS container; rosettasciio
decodes a hypermap whole, so the decoded cube is held in memory once per process (refused with
a one-line error when it would not fit) and blocks are served from it. An ``.spx`` is one
spectrum: a 1 × 1 scan. The energy axis, live/real time, beam (tube) voltage, pixel size and
the vendor's element list go into the header and metadata.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maxrf.errors import HeaderError, ScanNotFoundError
from maxrf.io.cube import CubeFile
from maxrf.io.rpl import EnergyCalibration, RplHeader

SUFFIXES = (".bcf", ".spx")
EXTRA_HINT = "pip install 'maxrf[bruker]'"
MEMORY_SHARE = 0.5  # a decoded .bcf may use at most this share of the available memory


def is_bruker(path: str | Path) -> bool:
    """Whether ``path`` names a Bruker ``.bcf``/``.spx`` file (by its suffix)."""
    return Path(path).suffix.lower() in SUFFIXES


def _reader():
    try:
        from rsciio.bruker import file_reader
    except ImportError:
        raise HeaderError(f"reading Bruker .bcf/.spx files needs the 'bruker' extra "
                          f"({EXTRA_HINT})") from None
    return file_reader


def _signal(path: Path, lazy: bool) -> dict:
    """rosettasciio's signal dict of the file's spectrum image (``.bcf``) or spectrum (``.spx``)."""
    import warnings

    file_reader = _reader()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if path.suffix.lower() == ".bcf":
                items = file_reader(str(path), lazy=lazy, select_type="spectrum_image")
            else:
                items = file_reader(str(path))
    except Exception as exc:  # rosettasciio raises TypeError, KeyError, ValueError … on damage
        why = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise HeaderError(f"unreadable Bruker file ({why})", path) from None
    cubes = [d for d in items if np.ndim(d["data"]) in (1, 3)]
    if not cubes:
        raise HeaderError("holds no spectrum or spectrum image", path)
    return cubes[0]


def _axis(signal: dict, name: str) -> dict | None:
    return next((a for a in signal["axes"] if a.get("name", "").lower() == name), None)


def _check_container(path: Path) -> None:
    """Every stored piece of a ``.bcf`` (an SFS container) lies inside the file: a truncated
    file is refused here, before rosettasciio's compiled decoder reads past its end."""
    from rsciio.bruker._api import SFS_reader

    try:
        sfs = SFS_reader(str(path))
    except Exception as exc:
        why = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise HeaderError(f"unreadable Bruker file ({why})", path) from None
    size = path.stat().st_size
    stack = [sfs.vfs]
    while stack:
        for item in stack.pop().values():
            if isinstance(item, dict):
                stack.append(item)
            elif getattr(item, "size", 0) and len(item.pointers):
                tail = item.size % sfs.usable_chunk or sfs.usable_chunk
                ends = np.append(item.pointers[:-1] + sfs.usable_chunk, item.pointers[-1] + tail)
                if ends.max() > size or len(item.pointers) < item.size_in_chunks:
                    raise HeaderError(f"unreadable Bruker file (truncated: '{item.name}' needs "
                                      f"{int(ends.max())} bytes, the file has {size})", path)


def _counts_dtype(data: np.ndarray) -> np.dtype:
    """The smallest unsigned type that holds a spectrum's counts (``.spx`` comes as uint64)."""
    top = int(np.max(data)) if data.size else 0
    return np.dtype("<u2" if top < 2**16 else "<u4" if top < 2**32 else "<u8")


def read_bruker_header(path: str | Path) -> tuple[RplHeader, dict]:
    """The cube's shape, dtype and energy axis as an :class:`RplHeader`, and the metadata."""
    path = Path(path)
    if not path.exists():
        raise ScanNotFoundError("Bruker file not found", path)
    spx = path.suffix.lower() == ".spx"
    if not spx:
        _reader()
        _check_container(path)
    signal = _signal(path, lazy=not spx)
    data = signal["data"]
    if spx:
        height, width, channels = 1, 1, int(np.shape(data)[0])
        dtype = _counts_dtype(np.asarray(data))
    else:
        height, width, channels = (int(n) for n in np.shape(data))
        dtype = np.dtype(data.dtype).newbyteorder("<")
    energy = _axis(signal, "energy")
    if energy is None or str(energy.get("units", "")).lower() != "kev":
        raise HeaderError("has no energy axis in keV", path)
    kinds = {"u": "unsigned", "i": "signed", "f": "float"}
    header = RplHeader(
        path=path, width=width, height=height, depth=channels, offset=0,
        data_length=dtype.itemsize, data_type=kinds[dtype.kind], byte_order="little-endian",
        record_by="vector",
        energy=EnergyCalibration(float(energy.get("offset", 0.0)), float(energy["scale"]),
                                 source="bruker"),
    )
    return header, _metadata(signal, "bruker-spx" if spx else "bruker-bcf")


def _metadata(signal: dict, fmt: str) -> dict:
    """What the file says besides the counts, under maxrf's names (absent keys left out)."""
    md = signal.get("metadata", {})
    inst = next(iter(md.get("Acquisition_instrument", {}).values()), {})
    eds = inst.get("Detector", {}).get("EDS", {})
    hardware = signal.get("original_metadata", {}).get("Hardware", {})
    meta = {"format": fmt,
            "title": md.get("General", {}).get("title"),
            "date": md.get("General", {}).get("date"),
            "tube_kv": inst.get("beam_energy"),
            "beam_current": inst.get("beam_current"),
            "live_time_s": eds.get("live_time"),
            "real_time_s": eds.get("real_time"),
            "detector": eds.get("detector_type"),
            "elements": md.get("Sample", {}).get("elements"),
            "zero_peak_frequency_hz": hardware.get("ZeroPeakFrequency")}
    height = _axis(signal, "height")
    if height is not None and str(height.get("units")) in ("µm", "um", "mm"):
        scale = float(height["scale"])
        meta["pixel_size_mm"] = scale if height["units"] == "mm" else scale / 1000.0
    return {k: _plain(v) for k, v in meta.items() if v is not None}


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


_DECODED: dict[tuple, np.ndarray] = {}
_LOCK = threading.Lock()


def _decoded(path: str, header: RplHeader) -> np.ndarray:
    """The whole (height, width, channels) cube, decoded once per process and file version."""
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    with _LOCK:
        if key not in _DECODED:
            need = header.height * header.width * header.depth * header.dtype.itemsize
            _check_memory(need, Path(path))
            _DECODED.clear()
            signal = _signal(Path(path), lazy=False)
            data = np.asarray(signal["data"])
            data = data.reshape(header.shape) if data.ndim == 1 else data
            _DECODED[key] = np.ascontiguousarray(data, dtype=header.dtype)
        return _DECODED[key]


def _check_memory(need: int, path: Path) -> None:
    import psutil

    available = psutil.virtual_memory().available
    if need > MEMORY_SHARE * available:
        raise HeaderError(f"its hypermap decodes to {need / 2**30:.1f} GiB, more than half of "
                          f"the {available / 2**30:.1f} GiB free (rosettasciio decodes a .bcf "
                          "whole); export it as .rpl/.raw from Bruker's software", path)


@dataclass(frozen=True)
class BrukerFile(CubeFile):
    """A ``.bcf``/``.spx`` presenting (height, width, channels), read like a ``RawFile``."""

    def read_block(self, rows: slice, cols: slice, out: np.ndarray | None = None) -> np.ndarray:
        """Pixels ``[rows, cols]`` with all channels, into ``out`` when given."""
        block = _decoded(self.path, self.header)[rows, cols]
        if out is None:
            return block.copy()
        if out.shape != block.shape or out.dtype != block.dtype:
            raise ValueError(f"out must be {block.shape} {block.dtype}, not {out.shape} "
                             f"{out.dtype}")
        out[...] = block
        return out

    def prefetch(self, rows: slice, cols: slice | None = None) -> None:
        """Nothing to do: the file is decoded whole on the first read."""
