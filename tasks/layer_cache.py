"""Caching of layer-writing tasks: the key is made from the scan fingerprint, the step's parameters,
its code version and its inputs' keys; the layer's own attributes are the source of truth.

Prefect serves a cached result only while the datastack still holds every layer of the step with
that key (``LayerCache.compute_key`` returns no key otherwise), and a task whose Prefect record was
wiped still finds its layers by key and ends as "Cached" without recomputing. A per-step OS lock
makes concurrent runs on one scan compute each layer once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.cache_policies import CachePolicy
from prefect.states import Completed

from maxrf.datastack import DataStack, find_by_key
from maxrf.datastack.lock import file_lock
from maxrf.fingerprint import step_key


@dataclass
class StepSpec:
    """What identifies a step's output: name, code version, layers, parameters and upstream refs."""

    step: str
    version: str
    layers: tuple[str, ...]
    params: tuple[str, ...] = ()
    upstream: tuple[str, ...] = ()

    def key(self, inputs: dict[str, Any]) -> str:
        params = {p: inputs.get(p) for p in self.params}
        keys = [inputs[u]["key"] for u in self.upstream if inputs.get(u) is not None]
        return step_key(self.step, self.version, params, keys)

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
    datastack_of: Callable[[dict], str] = field(default=lambda inputs: inputs["datastack"])

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs) -> str | None:
        key = self.spec.key(inputs)
        return key if stored_layers(self.datastack_of(inputs), self.spec, key) else None


def run_step(spec: StepSpec, inputs: dict, datastack: str | Path, compute: Callable[[dict], Any]):
    """Reuse the step's layers when they exist with this key; else compute them under a lock.

    ``compute(provenance)`` writes the layers (recording ``provenance`` in their attributes) and
    returns ``{layer: stored name}``.
    """
    key = spec.key(inputs)
    datastack = Path(datastack)
    logger = get_run_logger()
    datastack.parent.mkdir(parents=True, exist_ok=True)
    locks = datastack.with_name(f".{datastack.name}.locks")  # one hidden folder, not a file
    locks.mkdir(exist_ok=True)  # per step beside every datastack
    lock = locks / f"{spec.step}.lock"
    with file_lock(lock, timeout=24 * 3600, what=f"{spec.step} step lock"):
        found = stored_layers(datastack, spec, key)
        if found:
            logger.info("%s: layers %s already hold key %s", spec.step, list(found.values()), key)
            ref = spec.ref(datastack, key, found, cached=True)
            return Completed(name="Cached", message=f"layers found in {datastack.name}", data=ref)
        inputs_keys = [inputs[u]["key"] for u in spec.upstream if inputs.get(u) is not None]
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
