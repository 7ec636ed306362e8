"""Exports of a datastack's data into other tools' formats (maps as figures: ``maxrf.figures``)."""

from __future__ import annotations

from pathlib import Path

FORMATS = {
    "rpl": "the raw counts as a clean Lispix PREFIX.rpl/.raw pair (rosettasciio, PyMca, Lispix)",
    "hspy": "PREFIX.hspy (counts, energy axis) and PREFIX_elementmaps.hspy for HyperSpy",
    "zspy": "PREFIX.zspy and PREFIX_elementmaps.zspy: the same as hspy, as zarr directories",
    "dms": "the element maps as a Datamuncher .dms cube (XRF-Explorer)",
    "tiff": "the element maps as 32-bit TIFFs in counts, one per element and one stack (Fiji)",
}


def export(datastack, to: str, target: str | Path) -> list[Path]:
    """Write ``datastack``'s data as format ``to`` (a key of ``FORMATS``) at ``target``."""
    from maxrf.datastack import DataStack
    from maxrf.errors import MaxrfError

    ds = DataStack.of(datastack)
    target = Path(target)
    if to == "rpl":
        from maxrf.exports.ripple import export_ripple

        return list(export_ripple(ds, target))
    if to == "hspy":
        from maxrf.exports.hyperspy import export_hspy

        return export_hspy(ds, target)
    if to == "zspy":
        from maxrf.exports.hyperspy import export_zspy

        return export_zspy(ds, target)
    if to == "dms":
        from maxrf.exports.dms import export_dms

        return [export_dms(ds, target)]
    if to == "tiff":
        from maxrf.exports.tiff import export_tiff

        return export_tiff(ds, target)
    raise MaxrfError(f"unknown export format {to!r} (expected {', '.join(FORMATS)})")
