"""Task: per-pixel element maps (fitted counts of every element's lines)."""

from __future__ import annotations

from maxrf.pipeline.table import default

from .layer_cache import run_step, step_task


@step_task("element-maps")
def element_maps(
    converted: dict,
    calibrated: dict,
    hot: dict,
    datastack: str,
    anode: str = default("anode"),
    tube_kv: float | None = default("tube_kv"),
    elements: list[str] | None = default("elements"),
    add_elements: list[str] | None = default("add_elements"),
    drop_elements: list[str] | None = default("drop_elements"),
    dask_address: str | None = None,
):
    """``maxrf_elementmaps`` (+ atomic numbers, residual, sigma, background, maxrf4u's names)."""
    return run_step("element-maps", dict(locals()))
