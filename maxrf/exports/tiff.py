"""Element maps as TIFFs that Fiji/ImageJ open in counts: one 32-bit float image per element
(``EL.tif``) and one multi-page stack (``elementmaps.tif``) whose pages carry the element names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from maxrf.datastack import DataStack
from maxrf.errors import MaxrfError
from maxrf.io.atomic import atomic_write


def read_maps(datastack: str | Path | DataStack) -> tuple[list[str], np.ndarray]:
    """(element symbols, maps elements × height × width in counts) from a datastack."""
    ds = DataStack.of(datastack)
    if "maxrf_elementmaps" not in ds:
        raise MaxrfError("no element maps: run 'maxrf maps' first", ds.path)
    return list(ds.attrs("maxrf_elementmaps")["elements"]), ds.read("maxrf_elementmaps")


def write_tiffs(elements: list[str], maps: np.ndarray, folder: Path) -> list[Path]:
    """``EL.tif`` per element and ``elementmaps.tif`` (a stack, one slice per element labelled
    with its symbol): 32-bit float counts per pixel in ImageJ's format, so Fiji/ImageJ show
    counts, not grey levels."""
    import tifffile

    out = []
    for el, m in zip(elements, maps, strict=True):
        desc = json.dumps({"element": el, "units": "counts per pixel"})

        def one(p, m=m, el=el, desc=desc):
            tifffile.imwrite(p, np.asarray(m, np.float32), imagej=True,
                             metadata={"Labels": [el], "Info": desc}, description=None)

        out.append(atomic_write(folder / f"{el}.tif", one))
    if len(elements):
        stack = np.asarray(maps, np.float32)

        def save_all(p):
            tifffile.imwrite(p, stack, imagej=True,
                             metadata={"axes": "ZYX", "Labels": list(elements),
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
    elements, maps = read_maps(datastack)
    return write_tiffs(elements, maps, Path(folder))
