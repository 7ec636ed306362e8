"""Task: per-pixel element maps (fitted counts of every element's lines)."""

from __future__ import annotations

from maxrf import elementmaps as em
from maxrf import steps

from .layer_cache import StepSpec, run_step, step_task

ELEMENT_MAPS = StepSpec(
    "element-maps",
    em.VERSION,
    em.LAYERS,
    params=("anode", "tube_kv", "elements", "add_elements", "drop_elements"),
    upstream=("converted", "calibrated", "hot"),
)


@step_task(ELEMENT_MAPS)
def element_maps(
    converted: dict,
    calibrated: dict,
    hot: dict,
    datastack: str,
    anode: str = "Rh",
    tube_kv: float = 50.0,
    elements: list[str] | None = None,
    add_elements: list[str] | None = None,
    drop_elements: list[str] | None = None,
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
