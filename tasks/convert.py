"""Task: one-pass conversion (raw counts, smoothed cube, max/mean spectra, max pixels)."""

from __future__ import annotations

from maxrf.convert import convert
from maxrf.pipeline import default

from .layer_cache import StepSpec, run_step, step_task

SPEC = StepSpec.of("convert")


@step_task(SPEC)
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
    inputs = dict(locals())

    def compute(provenance: dict) -> dict[str, str]:
        return convert(
            scan["raw"],
            datastack,
            sigma=sigma,
            flip_horizontal=flip_horizontal,
            flip_vertical=flip_vertical,
            rpl_path=scan["rpl"],
            precision_bits=precision_bits,
            scheduler=dask_address,
            provenance=provenance,
        )

    return run_step(SPEC, inputs, datastack, compute)
