"""A clean Lispix Ripple copy of a datastack's raw counts (``PREFIX.raw`` + ``PREFIX.rpl``):
record-by vector, little-endian, tab-separated keys with the energy axis as HyperSpy's
``depth-scale``/``depth-origin``/``depth-units`` (what rosettasciio and every Ripple reader take,
unlike Bruker's layout-B lines). Written band by band from ``maxrf_raw`` (bounded memory), each
file to a temporary name first: nothing half-written is left behind."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from maxrf.datastack import DataStack
from maxrf.errors import MaxrfError
from maxrf.io.atomic import atomic_write
from maxrf.io.rpl import EnergyCalibration, format_rpl

ROWS = 16  # rows per band: one row of the layer's chunks


def linear_axis(energies: np.ndarray) -> EnergyCalibration:
    """The straight line through a calibrated axis (a quadratic term, if any, is dropped)."""
    ch = np.arange(energies.size, dtype=np.float64)
    gain, offset = np.polyfit(ch, np.asarray(energies, dtype=np.float64), 1)
    return EnergyCalibration(float(offset), float(gain))


def export_ripple(datastack: str | Path | DataStack, prefix: str | Path) -> tuple[Path, Path]:
    """Write ``PREFIX.raw`` and ``PREFIX.rpl`` from ``maxrf_raw`` (and ``maxrf_energies``)."""
    ds = DataStack.of(datastack)
    if "maxrf_raw" not in ds:
        raise MaxrfError("no layer 'maxrf_raw' to export: convert the scan first", ds.path)
    raw = ds.array("maxrf_raw")
    h, w, c = raw.shape
    dtype = np.dtype(raw.dtype).newbyteorder("<")
    energy = linear_axis(ds.read("maxrf_energies")) if "maxrf_energies" in ds else None
    prefix = Path(prefix)
    raw_path, rpl_path = prefix.with_name(prefix.name + ".raw"), prefix.with_name(
        prefix.name + ".rpl")
    for target in (raw_path, rpl_path):
        if target.resolve() == ds.path.resolve():
            raise MaxrfError("the export would overwrite the datastack itself", target)

    def write_raw(tmp: str) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC)
        try:
            for r0 in range(0, h, ROWS):
                block = np.ascontiguousarray(raw[r0 : min(r0 + ROWS, h)], dtype=dtype)
                os.pwrite(fd, block.tobytes(), r0 * w * c * dtype.itemsize)
        finally:
            os.close(fd)

    text = format_rpl(w, h, c, dtype, "vector", 0, "lispix", energy)
    atomic_write(raw_path, write_raw)
    atomic_write(rpl_path, lambda tmp: Path(tmp).write_text(text))
    return raw_path, rpl_path
