"""What every layer-writing task shares: Prefect's cache key is the step's key from the pipeline
table, offered only while the datastack still holds the step's layers with it; the work itself is
the core runner's (:func:`maxrf.pipeline.runner.run_step`: layers found by key whatever wrote them,
inputs pinned by key, a per-step lock), so a task whose Prefect record was wiped still finds its
layers and ends as "Cached" without recomputing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import CachePolicy
from prefect.states import Completed

from maxrf.pipeline import runner
from maxrf.pipeline.table import Step, step

# Which task argument carries each upstream step's reference.
UPSTREAM_ARG = {"scan": "scan", "convert": "converted", "calibrate": "calibrated",
                "hotmax": "hot", "hotmax-noise": "noise", "bands": "banded",
                "element-maps": "mapped"}


def upstream_keys(definition: Step, inputs: dict[str, Any]) -> dict[str, str]:
    """The upstream steps' keys, from the references the task received."""
    return {u: (inputs.get(UPSTREAM_ARG[u]) or {}).get("key") for u in definition.upstream}


@dataclass
class LayerCache(CachePolicy):
    """Cache key = the step key, offered only while the datastack holds the step's layers."""

    definition: Step | None = None

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs) -> str | None:
        key = self.definition.key(inputs, upstream_keys(self.definition, inputs))
        return key if runner.stored_layers(inputs["datastack"], self.definition, key) else None


def run_step(name: str, inputs: dict[str, Any]):
    """The task's body: the core runner's step, logged; "Cached" when its layers existed."""
    definition = step(name)
    scan = inputs.get("scan")
    result = runner.run_step(
        name,
        inputs["datastack"],
        {p: inputs[p] for p in definition.params if p in inputs},
        upstream_keys(definition, inputs),
        scan=runner.Scan(scan["raw"], scan["rpl"], scan["key"]) if scan else None,
        options=runner.Options(progress=False, scheduler=inputs.get("dask_address")),
        log=get_run_logger().info,
    )
    if result.cached:
        return Completed(name="Cached", message="layers found in the datastack",
                         data=result.ref())
    return result.ref()


def step_task(name: str):
    """The Prefect task of a layer-writing step: named after it (no random run-name suffix),
    cached on its key while its layers hold that key."""
    return task(name=name, task_run_name=name, cache_policy=LayerCache(definition=step(name)),
                persist_result=True)
