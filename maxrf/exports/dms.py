"""Datamuncher ``.dms`` element cubes, the element-map format XRF-Explorer (Van Gogh Museum)
opens: a text line ``2``, a line ``width height n_elements``, the maps as little-endian float32
(element, row, column), then the element names, one per line. Written one map at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from maxrf.datastack import DataStack
from maxrf.io.atomic import atomic_write


def export_dms(datastack: str | Path | DataStack, path: str | Path) -> Path:
    """``PATH`` (``.dms`` added when missing) from ``maxrf_elementmaps`` (counts per pixel)."""
    from maxrf.exports.tiff import read_maps

    ds = DataStack.of(datastack)
    elements, maps = read_maps(ds)
    n, h, w = maps.shape
    path = Path(path)
    path = path if path.suffix.lower() == ".dms" else path.with_name(path.name + ".dms")

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(b"2\n" + f"{w} {h} {n}\n".encode())
            for m in maps:
                f.write(np.ascontiguousarray(m, dtype="<f4").tobytes())
            f.write("\n".join(elements).encode())

    return atomic_write(path, write, durable=True)
