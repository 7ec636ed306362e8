"""Task: one-pass conversion (raw counts, smoothed cube, max/mean spectra, max pixels)."""

from __future__ import annotations

from maxrf.pipeline.table import default

from .layer_cache import run_step, step_task


@step_task("convert")
def convert_scan(
    scan: dict,
    datastack: str,
    sigma: float = default("sigma"),
    flip_horizontal: bool = default("flip_horizontal"),
    flip_vertical: bool = default("flip_vertical"),
    precision_bits: int | None = default("precision_bits"),
    dask_address: str | None = None,
):
    """Write the conversion layers into ``datastack`` (or reuse them when keyed the same)."""
    return run_step("convert", dict(locals()))
