"""Task: per-pixel element maps (fitted counts of every element's lines)."""

from __future__ import annotations

from maxrf import steps
from maxrf.pipeline import default

from .layer_cache import StepSpec, run_step, step_task

ELEMENT_MAPS = StepSpec.of("element-maps")


@step_task(ELEMENT_MAPS)
def element_maps(
    converted: dict,
    calibrated: dict,
    hot: dict,
    datastack: str,
    anode: str = default("anode"),
    tube_kv: float = default("tube_kv"),
    elements: list[str] | None = default("elements"),
    add_elements: list[str] | None = default("add_elements"),
    drop_elements: list[str] | None = default("drop_elements"),
    dask_address: str | None = None,
):
    """``maxrf_elementmaps`` (+ atomic numbers, residual, background, maxrf4u's names)."""
    inputs = dict(locals())
    return run_step(
        ELEMENT_MAPS,
        inputs,
        datastack,
        lambda prov: steps.elementmap_layers(
            datastack, anode, tube_kv, elements, add_elements, drop_elements,
            scheduler=dask_address, progress=False, provenance=prov,
        ),
    )
