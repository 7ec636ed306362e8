"""The one runner of the chain (core: no Prefect). Every path that writes layers goes through it:
the command line, the Python API and the Prefect tasks (thin wrappers that add orchestration).

A step's key comes from the pipeline table (its parameters, code version and upstream keys; the
first step's upstream is the scan's fingerprint). :func:`run_step` finds the step's layers with that
key whatever command wrote them, or computes them under the step's lock with the upstream layers
pinned **by key** (a later version of an input written by another run is never read by mistake)
and records the key on every layer it commits. :class:`Runner` runs a chain of steps on one
datastack: from a scan (every key computed), or from the datastack alone (the steps it is not
asked to run are taken as the datastack records them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from maxrf.datastack import DataStack, find_by_key
from maxrf.datastack.lock import step_lock
from maxrf.errors import MaxrfError
from maxrf.pipeline.memory import release
from maxrf.pipeline.table import PARAMS, STEPS, Step, chain, chain_keys, step


@dataclass(frozen=True)
class Scan:
    """The scan a chain starts from: its files and its fingerprint key."""

    raw: str
    rpl: str
    key: str
    meta: Mapping[str, Any] = field(default_factory=dict)  # what the file says (tube, times)

    @classmethod
    def open(cls, raw_path: str | Path, fingerprint: str = "quick") -> Scan:
        """Validate the pair (header, exact raw size) and fingerprint it."""
        from maxrf.io.raw import open_scan

        scan = open_scan(raw_path)
        return cls(str(scan.raw), str(scan.rpl), scan.key(fingerprint), dict(scan.metadata))


@dataclass(frozen=True)
class Options:
    """How steps run (never part of a key): a progress bar, a dask.distributed scheduler."""

    progress: bool | None = False
    scheduler: Any = None


@dataclass(frozen=True)
class StepRun:
    """What a step left in the datastack: its key and ``{layer: stored name}``."""

    step: str
    datastack: str
    key: str
    layers: dict[str, str]
    cached: bool
    seconds: float = 0.0
    made_by: str = ""  # the step whose pass wrote these layers, when not this one ("convert")

    def ref(self) -> dict:
        """The small reference a Prefect task returns (arrays never travel through Prefect)."""
        out = {"step": self.step, "datastack": self.datastack, "key": self.key,
               "layers": self.layers, "cached": self.cached}
        return {**out, "made_by": self.made_by} if self.made_by else out


Compute = Callable[[DataStack, Mapping[str, Any], dict, "Scan | None", Options], dict[str, str]]


def _convert(ds, p, prov, scan, opt):
    from maxrf.pipeline.convert import convert

    if scan is None:
        raise MaxrfError("the conversion needs the scan (.raw and .rpl)", ds.path)
    # the band layers come from the same pass over the counts, under their own step's key
    bands = step("bands")
    band_prov = provenance(bands, p, {"convert": prov["cache_key"]})
    stored = convert(scan.raw, ds.path, sigma=p["sigma"], flip_horizontal=p["flip_horizontal"],
                     flip_vertical=p["flip_vertical"], rpl_path=scan.rpl,
                     precision_bits=p["precision_bits"], scheduler=opt.scheduler,
                     progress=opt.progress, provenance=prov, bands=band_prov)
    return {k: v for k, v in stored.items() if k in step("convert").layers}


def _calibrate(ds, p, prov, scan, opt):
    from maxrf.pipeline.steps import calibrate_layers

    return calibrate_layers(ds, p["anode"], p["energies"], p["use_header"], provenance=prov,
                            tube_kv=p["tube_kv"])


def _hotmax(ds, p, prov, scan, opt):
    from maxrf.pipeline.steps import hotmax_layers

    return hotmax_layers(ds, p["prominence"], provenance=prov)


def _noise(ds, p, prov, scan, opt):
    from maxrf.pipeline.steps import noise_layers

    return noise_layers(ds, p["radius"], provenance=prov)


def _subpeaks(ds, p, prov, scan, opt):
    from maxrf.pipeline.steps import subpeak_layers

    return subpeak_layers(ds, provenance=prov)


def _bands(ds, p, prov, scan, opt):
    from maxrf.pipeline.bands import band_layers

    return band_layers(ds, provenance=prov, progress=opt.progress)


def _livetime(ds, p, prov, scan, opt):
    from maxrf.pipeline.livetime import livetime_layers

    if not p["pulser_hz"]:
        raise MaxrfError("the live time needs the pulser rate (pulser_hz)", ds.path)
    return livetime_layers(ds, p["pulser_hz"], p["dwell_ms"], provenance=prov)


def _element_maps(ds, p, prov, scan, opt):
    from maxrf.pipeline.steps import elementmap_layers

    return elementmap_layers(ds, p["anode"], p["tube_kv"], p["elements"], p["add_elements"],
                             p["drop_elements"], scheduler=opt.scheduler, progress=opt.progress,
                             provenance=prov)


def _register(ds, p, prov, scan, opt):
    from maxrf.imaging.registration import registration_layer

    if not p["photo"]:
        raise MaxrfError("the registration needs a photograph (photo)", ds.path)
    return registration_layer(ds, p["photo"], p["photo_points"], p["registration_model"],
                              provenance=prov, refine=p["refine_points"])


def _materials(ds, p, prov, scan, opt):
    from maxrf.pipeline.materials import materials_layers

    return materials_layers(ds, p["materials"], provenance=prov)


COMPUTE: dict[str, Compute] = {
    "convert": _convert,
    "calibrate": _calibrate,
    "hotmax": _hotmax,
    "hotmax-noise": _noise,
    "subpeaks": _subpeaks,
    "bands": _bands,
    "livetime": _livetime,
    "element-maps": _element_maps,
    "materials": _materials,
    "register": _register,
}
assert set(COMPUTE) == {s.name for s in STEPS}, "every step of the table has its core function"


def with_defaults(params: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter of the table: ``params`` over the defaults."""
    return {**{name: p.default for name, p in PARAMS.items()}, **params}


def with_file_defaults(params: Mapping[str, Any], datastack: str | Path | DataStack,
                       scan: Scan | None = None) -> dict[str, Any]:
    """``params`` with the ones left empty that the scan answers: the tube voltage is the one
    the scan file records (from ``scan``, else as the datastack's conversion recorded it; a run
    on a datastack alone first takes its calibration's), else the default."""
    from maxrf.pipeline.tube import recorded_metadata, tube_voltage

    params = with_defaults(params)
    if params["tube_kv"] is not None:
        return params
    if scan is not None:
        return {**params, "tube_kv": tube_voltage(None, scan.meta)}
    ds = DataStack.of(datastack)
    cal = ds.attrs("maxrf_energies").get("calibration", {}) if (
        ds.path.exists() and "maxrf_energies" in ds) else {}
    kv = cal.get("tube_kv")
    return {**params, "tube_kv": float(kv) if kv else tube_voltage(None, recorded_metadata(ds))}


def stored_layers(datastack: str | Path | DataStack, spec: Step, key: str
                  ) -> dict[str, str] | None:
    """``{layer: stored name}`` when every layer of the step exists with ``key``, else None."""
    ds = DataStack.of(datastack)
    if not ds.path.exists():
        return None
    found = {layer: find_by_key(ds, layer, key) for layer in spec.layers}
    return found if all(found.values()) else None


def cached_chain(
    datastack: str | Path,
    scan: Scan,
    params: Mapping[str, Any],
    steps: Iterable[Step] | None = None,
) -> list[dict] | None:
    """``[{"step", "key", "layers"}]`` when every one of ``steps`` (default: the chain a run
    with ``params`` makes) already has its layers with the key this run would give it (nothing
    to compute), else None."""
    params = with_file_defaults(params, datastack, scan)
    keys = chain_keys(scan.key, params)
    if steps is None:
        steps = chain(params["maps"], bool(params["pulser_hz"]), bool(params["photo"]))
    out = []
    for s in steps:
        found = stored_layers(datastack, s, keys[s.name])
        if found is None:
            return None
        out.append({"step": s.name, "key": keys[s.name], "layers": found})
    return out


def _pins(ds: DataStack, spec: Step, upstream: Mapping[str, str]) -> dict[str, str]:
    """The stored version of every upstream layer, found by its step's key."""
    pins: dict[str, str] = {}
    for u in spec.upstream:
        if u == "scan":
            continue
        for layer in step(u).layers:
            found = find_by_key(ds, layer, upstream[u]) or _unkeyed(ds, layer, upstream[u])
            if found is None:
                raise MaxrfError(f"step {spec.name}: no layer {layer!r} with the key of step "
                                 f"{u} ({upstream[u]}); run that step first", ds.path)
            pins[layer] = found
    return pins


UNKEYED = "unkeyed:"  # the key of a step whose layers were written without one (+ a layer name)


def _unkeyed(ds: DataStack, layer: str, key: str) -> str | None:
    """For a step written without keys (another tool, an older maxrf): its newest layers."""
    return ds.latest(layer) if key.startswith(UNKEYED) and layer in ds else None


def _legacy_layers(datastack: Path, spec: Step, upstream: Mapping[str, str]
                   ) -> dict[str, str] | None:
    """A step's newest layers when they and everything they were made from carry no key: a
    datastack from before keys is used as it is, not recomputed."""
    if not datastack.exists() or not all(upstream[u].startswith(UNKEYED) for u in spec.upstream):
        return None
    ds = DataStack(datastack)
    if not all(layer in ds for layer in spec.layers):
        return None
    found = {layer: ds.latest(layer) for layer in spec.layers}
    if any(ds.attrs(name).get("maxrf", {}).get("cache_key") for name in found.values()):
        return None
    return found


def provenance(spec: Step, params: Mapping[str, Any], upstream: Mapping[str, str]) -> dict:
    """What every layer of a step records: the step, its code version, its key, its inputs'
    keys and its parameters."""
    return {
        "step": spec.name,
        "code_version": spec.version,
        "cache_key": spec.key(params, upstream),
        "inputs": [upstream[u] for u in spec.upstream],
        "params": {p: params.get(p) for p in spec.params},
    }


def in_this_run(refs: list[dict]) -> list[dict]:
    """Step references (:meth:`StepRun.ref`) with ``cached`` False for layers that another
    step's pass wrote in this same run (the band layers when the conversion ran): found, but
    not from an earlier run."""
    computed = {r["step"] for r in refs if not r.get("cached")}
    return [{**r, "cached": False} if r.get("made_by") in computed else r for r in refs]


def run_step(
    name: str,
    datastack: str | Path,
    params: Mapping[str, Any],
    upstream: Mapping[str, str],
    scan: Scan | None = None,
    options: Options | None = None,
    log: Callable[[str], None] | None = None,
    force: bool = False,
) -> StepRun:
    """Reuse the step's layers when they exist with its key (unless ``force``); else compute
    them (inputs pinned by key, under the step's lock) and record the key on every layer."""
    spec = step(name)
    path = Path(datastack)
    # only a step that uses the tube voltage resolves an empty one (it may read the datastack)
    params = (with_file_defaults(params, path, scan) if "tube_kv" in spec.params
              else with_defaults(params))
    key = spec.key(params, upstream)
    started = time.time()
    with step_lock(path, name):
        ds = DataStack(path)  # its directory read once for the key lookups below
        found = None if force else stored_layers(ds, spec, key)
        legacy = None if force or found else _legacy_layers(path, spec, upstream)
        if legacy:  # taken as they are, under the key a datastack-only run would record
            found, key = legacy, UNKEYED + legacy[spec.layers[0]]
        if found:
            if log:
                log(f"{name}: layers {', '.join(found.values())} already hold key {key}")
            made = ds.attrs(found[spec.layers[0]]).get("maxrf", {}).get("pass")
            return StepRun(name, str(path), key, found, cached=True,
                           made_by=made if made and made != name else "")
        if log:
            log(f"{name}: computing (key {key})")
        pinned = DataStack(path, pins=_pins(ds, spec, upstream) if path.exists() else {})
        try:
            stored = COMPUTE[name](pinned, params, provenance(spec, params, upstream), scan,
                                   options or Options())
        finally:
            release()  # the next step starts from what this one kept, not from its peak
    if log:
        log(f"{name}: wrote {', '.join(stored.values())}")
    return StepRun(name, str(path), key, stored, cached=False, seconds=time.time() - started)


def recorded_keys(datastack: str | Path) -> dict[str, str]:
    """Each step's key as the datastack records it on the newest version of the step's first
    layer (``UNKEYED`` + the layer's name when it was written without one); ``scan``: the
    conversion's input."""
    ds = DataStack(datastack)
    keys: dict[str, str] = {}
    for s in STEPS:
        if s.layers[0] not in ds:
            continue
        name = ds.latest(s.layers[0])
        meta = ds.attrs(name).get("maxrf", {})
        keys[s.name] = meta.get("cache_key") or UNKEYED + name
        if s.name == "convert":
            inputs = meta.get("inputs") or []
            keys["scan"] = inputs[0] if inputs else UNKEYED + "scan"
    return keys


@dataclass
class Runner:
    """Runs steps of the chain on one datastack.

    With a ``scan`` every key is computed (from its fingerprint and ``params``) and every missing
    step is run. Without one, the steps not asked for are taken as the datastack records them
    (``maxrf maps`` fits with the calibration the datastack has) and only the asked ones run.
    """

    datastack: str | Path
    params: Mapping[str, Any] = field(default_factory=dict)
    scan: Scan | None = None
    options: Options = field(default_factory=Options)
    log: Callable[[str], None] | None = None
    force: bool = False  # recompute the steps asked for even when their layers exist
    runs: list[StepRun] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.datastack = Path(self.datastack)
        self.params = with_file_defaults(self.params, self.datastack, self.scan)
        self.keys: dict[str, str] = (
            {"scan": self.scan.key} if self.scan else recorded_keys(self.datastack)
        )

    def run(self, names: Iterable[str] | None = None) -> list[StepRun]:
        """Run ``names`` (default: the chain ``process`` runs) and, with a scan, every step they
        need; returns the runs in the table's order."""
        if names is None:
            names = [s.name for s in chain(self.params["maps"], bool(self.params["pulser_hz"]),
                                            bool(self.params["photo"]))]
        asked = set(names)
        wanted = set(asked)
        if self.scan is not None:  # the upstream closure
            for s in reversed(STEPS):
                if s.name in wanted:
                    wanted |= {u for u in s.upstream if u != "scan"}
        out = []
        for s in STEPS:
            if s.name not in wanted:
                continue
            missing = [u for u in s.upstream if u not in self.keys]
            if missing:
                what = ", ".join(f"{u} ({step(u).layers[0] if u != 'scan' else 'the .raw'})"
                                 for u in missing)
                raise MaxrfError(f"step {s.name} needs {what} first; no layer of it here "
                                 "(process the scan: 'maxrf process SCAN.raw')", self.datastack)
            run = run_step(s.name, self.datastack, self.params, self.keys, self.scan,
                           self.options, self.log, force=self.force and s.name in asked)
            if run.made_by and any(r.step == run.made_by and not r.cached for r in self.runs):
                run = replace(run, cached=False)  # see in_this_run
            self.keys[s.name] = run.key
            self.runs.append(run)
            out.append(run)
        return out


def process(raw_path: str | Path, output: str | Path | None = None, *,
            fingerprint: str = "quick", progress: bool | None = None, scheduler: Any = None,
            steps: Iterable[str] | None = None, **params: Any) -> list[StepRun]:
    """The whole chain for one scan from Python, without Prefect (the same layers and keys as
    ``maxrf process``): every step whose layers exist with its key is reused."""
    from maxrf.pipeline.params import check_parameters, checkable

    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise MaxrfError(f"unknown parameter(s) {', '.join(unknown)} (parameters: "
                         f"{', '.join(PARAMS)})")
    check_parameters(fingerprint=fingerprint, **checkable(params))
    scan = Scan.open(raw_path, fingerprint)
    datastack = Path(output) if output else Path(scan.raw).with_suffix(".datastack")
    runner = Runner(datastack, params, scan, Options(progress, scheduler))
    return runner.run(steps)


def map_elements(datastack: str | Path, *, elements: list[str] | None = None,
                 add: list[str] | None = None, drop: list[str] | None = None,
                 anode: str | float | None = None, tube_kv: float | None = None,
                 force: bool = False, scheduler: Any = None,
                 progress: bool | None = None) -> StepRun:
    """The element-map step of a converted, calibrated datastack (``maxrf maps``, the viewer's
    "add element and refit"): the tube defaults to the one the scan was calibrated with; maps
    whose key exists are reused unless ``force``."""
    from maxrf.pipeline.params import check_parameters
    from maxrf.pipeline.table import default

    ds = DataStack(datastack)
    ds.require_file()
    cal = ds.attrs("maxrf_energies").get("calibration", {}) if "maxrf_energies" in ds else {}
    anode = anode if anode is not None else cal.get("anode", default("anode"))
    tube_kv = with_file_defaults({"tube_kv": tube_kv}, ds)["tube_kv"]
    check_parameters(anode=anode, tube_kv=tube_kv, elements=elements, add_elements=add,
                     drop_elements=drop)
    params = {"anode": anode, "tube_kv": float(tube_kv), "elements": elements,
              "add_elements": add, "drop_elements": drop}
    runner = Runner(ds.path, params, options=Options(progress=progress, scheduler=scheduler),
                    force=force)
    (run,) = runner.run(["element-maps"])
    return run
