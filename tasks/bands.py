"""Task: the viewer's layers (band cumulative sums, band-major counts, block sums)."""

from __future__ import annotations

from .layer_cache import run_step, step_task


@step_task("bands")
def band_layers(converted: dict, datastack: str):
    """Layers for fast band images and rectangle spectra (``maxrf view``)."""
    return run_step("bands", dict(locals()))
