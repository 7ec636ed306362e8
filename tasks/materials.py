"""Task: materials (paints) from the element maps."""

from __future__ import annotations

from maxrf.pipeline.table import default

from .layer_cache import run_step, step_task


@step_task("materials")
def materials_map(mapped: dict, datastack: str, materials: int | None = default("materials")):
    """``maxrf_materials`` (labels), ``_spectra`` (mean raw spectrum) and ``_composition``."""
    return run_step("materials", dict(locals()))
