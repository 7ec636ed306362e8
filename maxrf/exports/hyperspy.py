"""HyperSpy files: the raw counts as an EDS spectrum image (y, x | energy in keV, written chunk by
chunk from ``maxrf_raw``) and the element maps as a stack of images (element | y, x) with the
elements named in the metadata. ``.hspy`` (HDF5) through rosettasciio's own writer; ``.zspy`` (a
zarr v2 directory) written here in the same tree, because rosettasciio's zspy writer needs
zarr < 3 (its reader, and HyperSpy 2's ``hs.load``, open what is written here)."""

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


ZSPY_VERSION = "3.3"  # rosettasciio 0.15's zspy file_format_version


def _zattr(value):
    """An attribute as HyperSpy's hierarchical writer stores it (None as "_None_")."""
    if value is None:
        return "_None_"
    if isinstance(value, dict):
        return {k: _zattr(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_zattr(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def _zgroup(group, tree: dict) -> None:
    """A metadata dict as HyperSpy lays it out: sub-dicts are groups, the rest attributes."""
    for key, value in tree.items():
        if isinstance(value, dict):
            _zgroup(group.create_group(key), value)
        else:
            group.attrs[key] = _zattr(value)


def write_zspy(signal: dict, path: Path) -> Path:
    """One ``.zspy`` directory (zarr v2, nested chunk keys, Blosc-zstd as HyperSpy writes it),
    built under a temporary name and renamed when complete."""
    import os
    import shutil
    import tempfile

    import numcodecs
    import zarr

    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        root = zarr.open_group(zarr.storage.LocalStore(tmp), mode="w", zarr_format=2)
        root.attrs.update({"file_format": "ZSpy", "file_format_version": ZSPY_VERSION})
        title = signal["metadata"]["General"]["title"].replace("/", "-") or "__unnamed__"
        exp = root.create_group("Experiments").create_group(title)
        exp.attrs.update(signal["package_info"])
        for i, axis in enumerate(signal["axes"]):
            exp.create_group(f"axis-{i}").attrs.update(
                _zattr({"_type": "UniformDataAxis", "is_binned": False, **axis}))
        data = signal["data"]
        # a dask array keeps its chunks (the datastack's), numpy is one chunk
        chunks = tuple(int(c[0]) for c in data.chunks) if hasattr(data, "compute") else data.shape
        arr = exp.create_array("data", shape=data.shape, dtype=data.dtype, chunks=chunks,
                               compressor=numcodecs.Blosc(cname="zstd", clevel=1,
                                                          shuffle=numcodecs.Blosc.SHUFFLE),
                               chunk_key_encoding={"name": "v2", "separator": "/"})
        if hasattr(data, "compute"):  # a dask array: one row of chunks at a time
            step = chunks[0]
            for r0 in range(0, data.shape[0], step):
                arr[r0 : r0 + step] = np.asarray(data[r0 : r0 + step])
        else:
            arr[...] = np.asarray(data)
        _zgroup(exp.create_group("metadata"), signal["metadata"])
        _zgroup(exp.create_group("original_metadata"), signal["original_metadata"])
        exp.create_group("learning_results")
        exp.create_group("attributes").attrs.update({"_lazy": False, "ragged": False})
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _export(ds: DataStack, prefix: str | Path, write, suffix: str) -> list[Path]:
    """``PREFIX{suffix}`` (the counts) and ``PREFIX_elementmaps{suffix}`` (when there are maps),
    each written by ``write(signal, path)``."""
    prefix = Path(prefix)
    out = [write(cube_signal(ds), prefix.with_name(prefix.name + suffix))]
    if "maxrf_elementmaps" in ds:
        out.append(write(maps_signal(ds), prefix.with_name(f"{prefix.name}_elementmaps{suffix}")))
    return out


def export_zspy(datastack: str | Path | DataStack, prefix: str | Path) -> list[Path]:
    """``PREFIX.zspy`` (the counts) and ``PREFIX_elementmaps.zspy`` (when there are maps)."""
    return _export(DataStack.of(datastack), prefix, write_zspy, ".zspy")


def export_hspy(datastack: str | Path | DataStack, prefix: str | Path) -> list[Path]:
    """``PREFIX.hspy`` (the counts) and ``PREFIX_elementmaps.hspy`` (when there are maps)."""
    return _export(DataStack.of(datastack), prefix, write_hspy, ".hspy")
