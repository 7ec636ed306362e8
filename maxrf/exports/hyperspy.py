"""HyperSpy files (``.hspy``, HDF5, through rosettasciio's own writer): the raw counts as an EDS
spectrum image (y, x | energy in keV, written chunk by chunk from ``maxrf_raw``) and the element
maps as a stack of images (element | y, x) with the elements named in the metadata. HyperSpy 2
(``hs.load``) and every rosettasciio user open them with axes, units and metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from maxrf import __version__
from maxrf.datastack import DataStack
from maxrf.errors import MaxrfError
from maxrf.exports.tiff import pixel_size_mm
from maxrf.io.atomic import atomic_write

CUBE_SIGNAL = "EDS_SEM"  # exspy's EDS class (energy-axis tools, element lines); the tube
# voltage goes where it reads the beam energy


def _space_axes(ds: DataStack, height: int, width: int) -> list[dict]:
    size = pixel_size_mm(ds)
    units, scale = ("mm", size) if size else ("px", 1.0)
    return [{"name": name, "units": units, "scale": scale, "offset": 0.0, "size": n,
             "navigate": True} for name, n in (("y", height), ("x", width))]


def _signal(data, axes: list[dict], title: str, signal_type: str, package: str,
            extra_metadata: dict, original: dict) -> dict:
    """A rosettasciio signal dictionary (what ``hs.load`` turns into a signal)."""
    return {
        "data": data,
        "axes": axes,
        "metadata": {"General": {"title": title},
                     "Signal": {"signal_type": signal_type, "quantity": "X-rays (Counts)"},
                     **extra_metadata},
        "original_metadata": original,
        "learning_results": {},
        "models": {},
        "attributes": {"_lazy": True},
        "tmp_parameters": {},
        "package_info": {"package": package, "package_version": ""},
    }


def cube_signal(ds: DataStack) -> dict:
    """The raw counts as a lazy EDS spectrum image with the calibrated energy axis."""
    if "maxrf_raw" not in ds:
        raise MaxrfError("no layer 'maxrf_raw' to export: convert the scan first", ds.path)
    from maxrf.exports.ripple import linear_axis

    data = ds.read("maxrf_raw", compute=False)
    h, w, c = data.shape
    source = ds.attrs("maxrf_raw").get("source", {})
    header_axis = (source.get("header") or {}).get("energy")
    if "maxrf_energies" in ds:  # the calibration, else the file's own axis, else channels
        axis = linear_axis(ds.read("maxrf_energies"))
        scale, offset, units = axis.gain_kev, axis.offset_kev, "keV"
    elif header_axis:
        scale, offset, units = header_axis["gain_kev"], header_axis["offset_kev"], "keV"
    else:
        scale, offset, units = 1.0, 0.0, "channel"
    energy = {"name": "Energy", "units": units, "scale": scale, "offset": offset, "size": c,
              "navigate": False}
    meta = source.get("metadata", {}) or {}
    instrument = {"beam_energy": meta["tube_kv"]} if "tube_kv" in meta else {}
    if "live_time_s" in meta:
        instrument["Detector"] = {"EDS": {"live_time": meta["live_time_s"]}}
    extra = {"Acquisition_instrument": {"SEM": instrument}} if instrument else {}
    return _signal(data, _space_axes(ds, h, w) + [energy], ds.path.stem, CUBE_SIGNAL, "exspy",
                   extra, {"maxrf": {"source": _jsonable(source), "version": __version__}})


def maps_signal(ds: DataStack) -> dict:
    """The element maps (counts per pixel) as a stack of images, one per element."""
    from maxrf.exports.tiff import read_maps

    elements, maps = read_maps(ds)
    n, h, w = maps.shape
    element_axis = {"name": "element", "units": "", "scale": 1.0, "offset": 0.0, "size": n,
                    "navigate": True}
    space = [dict(a, navigate=False) for a in _space_axes(ds, h, w)]
    attrs = ds.attrs("maxrf_elementmaps")
    return _signal(np.asarray(maps, np.float32), [element_axis] + space,
                   f"{ds.path.stem} element maps", "", "hyperspy",
                   {"Sample": {"elements": list(elements)}},
                   {"maxrf": {"elements": list(elements), "units": "counts per pixel",
                              "instrument": _jsonable(attrs.get("instrument", {})),
                              "version": __version__}})


def _jsonable(value):
    """Plain dicts/lists/numbers/strings only (HDF5 attributes take nothing else)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value] if all(
            not isinstance(v, (dict, list, tuple)) for v in value) else str(value)
    return value


def write_hspy(signal: dict, path: Path) -> Path:
    """One ``.hspy`` file, written to a temporary name first (nothing half-written is left)."""
    from rsciio.hspy import file_writer

    def write(tmp: str) -> None:
        file_writer(tmp, signal, compression="gzip", show_progressbar=False)

    return atomic_write(path, write)


def export_hspy(datastack: str | Path | DataStack, prefix: str | Path) -> list[Path]:
    """``PREFIX.hspy`` (the counts) and ``PREFIX_elementmaps.hspy`` (when there are maps)."""
    ds = DataStack.of(datastack)
    prefix = Path(prefix)
    out = [write_hspy(cube_signal(ds), prefix.with_name(prefix.name + ".hspy"))]
    if "maxrf_elementmaps" in ds:
        out.append(write_hspy(maps_signal(ds), prefix.with_name(prefix.name +
                                                                 "_elementmaps.hspy")))
    return out
