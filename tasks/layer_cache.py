"""Caching of layer-writing tasks: the key is made from the scan fingerprint, the step's parameters,
its code version and its inputs' keys; the layer's own attributes are the source of truth.

Prefect serves a cached result only while the datastack still holds every layer of the step with
that key (``LayerCache.compute_key`` returns no key otherwise), and a task whose Prefect record was
wiped still finds its layers by key and ends as "Cached" without recomputing. A per-step OS lock
makes concurrent runs on one scan compute each layer once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.cache_policies import CachePolicy
from prefect.states import Completed

from maxrf.datastack import DataStack, find_by_key
from maxrf.datastack.lock import step_lock
from maxrf.pipeline import Step
from maxrf.pipeline import step as pipeline_step

# Which task argument carries each upstream step's reference.
UPSTREAM_ARG = {"scan": "scan", "convert": "converted", "calibrate": "calibrated",
                "hotmax": "hot", "hotmax-noise": "noise", "bands": "banded"}


@dataclass(frozen=True)
class StepSpec:
    """A step of the pipeline table as its task sees it: upstream references arrive as task
    arguments (``converted``, ``calibrated``, ...), parameters by their names."""

    definition: Step

    @classmethod
    def of(cls, name: str) -> StepSpec:
        return cls(pipeline_step(name))

    @property
    def step(self) -> str:
        return self.definition.name

    @property
    def version(self) -> str:
        return self.definition.version

    @property
    def layers(self) -> tuple[str, ...]:
        return self.definition.layers

    @property
    def params(self) -> tuple[str, ...]:
        return self.definition.params

    def upstream_keys(self, inputs: dict[str, Any]) -> dict[str, str]:
        return {u: (inputs.get(UPSTREAM_ARG[u]) or {}).get("key")
                for u in self.definition.upstream}

    def key(self, inputs: dict[str, Any]) -> str:
        """The step's key (a missing upstream reference raises)."""
        return self.definition.key(inputs, self.upstream_keys(inputs))

    def ref(self, datastack: str, key: str, stored: dict[str, str], cached: bool) -> dict:
        """The small result a task returns (large arrays never travel through Prefect)."""
        return {
            "step": self.step,
            "datastack": str(datastack),
            "key": key,
            "layers": stored,
            "cached": cached,
        }


def stored_layers(datastack: str | Path, spec: StepSpec, key: str) -> dict[str, str] | None:
    """``{layer: stored name}`` when every layer of the step exists with ``key``, else None."""
    path = Path(datastack)
    if not path.exists():
        return None
    ds = DataStack(path)
    found = {layer: find_by_key(ds, layer, key) for layer in spec.layers}
    return found if all(found.values()) else None


@dataclass
class LayerCache(CachePolicy):
    """Cache key = the step key, offered only while the datastack holds the step's layers."""

    spec: StepSpec | None = None

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs) -> str | None:
        key = self.spec.key(inputs)
        return key if stored_layers(inputs["datastack"], self.spec, key) else None


def run_step(spec: StepSpec, inputs: dict, datastack: str | Path, compute: Callable[[dict], Any]):
    """Reuse the step's layers when they exist with this key; else compute them under a lock.

    ``compute(provenance)`` writes the layers (recording ``provenance`` in their attributes) and
    returns ``{layer: stored name}``.
    """
    key = spec.key(inputs)
    datastack = Path(datastack)
    logger = get_run_logger()
    with step_lock(datastack, spec.step):
        found = stored_layers(datastack, spec, key)
        if found:
            logger.info("%s: layers %s already hold key %s", spec.step, list(found.values()), key)
            ref = spec.ref(datastack, key, found, cached=True)
            return Completed(name="Cached", message=f"layers found in {datastack.name}", data=ref)
        inputs_keys = list(spec.upstream_keys(inputs).values())
        provenance = {
            "step": spec.step,
            "code_version": spec.version,
            "cache_key": key,
            "inputs": inputs_keys,
            "params": {p: inputs.get(p) for p in spec.params},
        }
        stored = compute(provenance)
        logger.info("%s: wrote %s", spec.step, ", ".join(stored.values()))
    return spec.ref(datastack, key, stored, cached=False)


def step_task(spec: StepSpec):
    """The Prefect task of a layer-writing step: named after it (no random run-name suffix),
    cached on its key while its layers hold that key."""
    from prefect import task

    return task(name=spec.step, task_run_name=spec.step, cache_policy=LayerCache(spec=spec),
                persist_result=True)
