"""Task: the viewer's layers (band cumulative sums, band-major counts, block sums)."""

from __future__ import annotations

from prefect import task

from maxrf import bands

from .layer_cache import LayerCache, StepSpec, run_step

BANDS = StepSpec("bands", bands.VERSION, bands.LAYERS, upstream=("converted",))


@task(name="bands", cache_policy=LayerCache(spec=BANDS), persist_result=True)
def band_layers(converted: dict, datastack: str):
    """Layers for fast band images and rectangle spectra (``maxrf view``)."""
    inputs = dict(locals())
    return run_step(
        BANDS, inputs, datastack,
        lambda prov: bands.band_layers(datastack, provenance=prov, progress=False),
    )
