"""Task: the viewer's layers (band cumulative sums, band-major counts, block sums)."""

from __future__ import annotations

from maxrf import bands

from .layer_cache import StepSpec, run_step, step_task

BANDS = StepSpec.of("bands")


@step_task(BANDS)
def band_layers(converted: dict, datastack: str):
    """Layers for fast band images and rectangle spectra (``maxrf view``)."""
    inputs = dict(locals())
    return run_step(
        BANDS, inputs, datastack,
        lambda prov: bands.band_layers(datastack, provenance=prov, progress=False),
    )
