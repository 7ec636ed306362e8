"""Element maps as TIFFs that Fiji/ImageJ open in counts: one 32-bit float image per element
(``EL.tif``) and one multi-page stack (``elementmaps.tif``) whose pages carry the element names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from maxrf.datastack import DataStack
from maxrf.errors import MaxrfError
from maxrf.io.atomic import atomic_write


def pixel_size_mm(ds: DataStack) -> float | None:
    """The scan's pixel size (mm) when its file said so (``maxrf_raw`` source metadata)."""
    if "maxrf_raw" not in ds:
        return None
    meta = ds.attrs("maxrf_raw").get("source", {}).get("metadata", {}) or {}
    size = meta.get("pixel_size_mm")
    return float(size) if size else None


def read_maps(datastack: str | Path | DataStack) -> tuple[list[str], np.ndarray]:
    """(element symbols, maps elements × height × width in counts) from a datastack."""
    ds = DataStack.of(datastack)
    if "maxrf_elementmaps" not in ds:
        raise MaxrfError("no element maps: run 'maxrf maps' first", ds.path)
    return list(ds.attrs("maxrf_elementmaps")["elements"]), ds.read("maxrf_elementmaps")


def write_tiffs(elements: list[str], maps: np.ndarray, folder: Path,
                pixel_mm: float | None = None) -> list[Path]:
    """``EL.tif`` per element and ``elementmaps.tif`` (a stack, one slice per element labelled
    with its symbol): 32-bit float counts per pixel in ImageJ's format, so Fiji/ImageJ show
    counts, not grey levels."""
    import tifffile

    # the pixel size as ImageJ's calibration (Fiji's scale bar and measurements in mm)
    spacing = {"resolution": (1.0 / pixel_mm, 1.0 / pixel_mm)} if pixel_mm else {}
    units = {"unit": "mm"} if pixel_mm else {}
    out = []
    for el, m in zip(elements, maps, strict=True):
        desc = json.dumps({"element": el, "units": "counts per pixel"})

        def one(p, m=m, el=el, desc=desc):
            tifffile.imwrite(p, np.asarray(m, np.float32), imagej=True, **spacing,
                             metadata={"Labels": [el], "Info": desc, **units})

        out.append(atomic_write(folder / f"{el}.tif", one))
    if len(elements):
        stack = np.asarray(maps, np.float32)

        def save_all(p):
            tifffile.imwrite(p, stack, imagej=True, **spacing,
                             metadata={"axes": "ZYX", "Labels": list(elements), **units,
                                       "Info": json.dumps({"units": "counts per pixel",
                                                           "elements": list(elements)})})

        out.append(atomic_write(folder / "elementmaps.tif", save_all))
    return out


def read_tiff(path: str | Path) -> np.ndarray:
    """A TIFF written by ``write_tiffs`` back in counts (its first slice)."""
    import tifffile

    data = tifffile.imread(path)
    return np.asarray(data[0] if data.ndim == 3 else data, dtype=np.float64)


def export_tiff(datastack: str | Path | DataStack, folder: str | Path) -> list[Path]:
    """The element maps of a datastack as TIFFs in ``folder``."""
    ds = DataStack.of(datastack)
    elements, maps = read_maps(ds)
    return write_tiffs(elements, maps, Path(folder), pixel_size_mm(ds))
