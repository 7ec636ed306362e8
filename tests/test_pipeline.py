"""The pipeline table: one definition that flows, tasks, the CLI, the run form and the cached
chain all read."""

from __future__ import annotations

import inspect

import pytest

from maxrf.errors import MaxrfError
from maxrf.pipeline import table as pipeline


def test_missing_upstream_raises_instead_of_a_stale_key():
    hot = pipeline.step("hotmax")
    with pytest.raises(MaxrfError, match="no key for its upstream calibrate"):
        hot.key({}, {"convert": "convert-abc"})
    assert hot.key({}, {"convert": "a", "calibrate": "b"}) != hot.key({}, {"convert": "a",
                                                                         "calibrate": "c"})


def test_unknown_step_is_a_clear_error():
    with pytest.raises(MaxrfError, match="no step 'nope'"):
        pipeline.step("nope")


def test_every_step_names_known_params_and_earlier_upstream():
    seen = {"scan"}
    for s in pipeline.STEPS:
        assert set(s.params) <= set(pipeline.PARAMS), s.name
        assert set(s.upstream) <= seen, s.name  # upstream steps come first
        seen.add(s.name)
    layers = [layer for s in pipeline.STEPS for layer in s.layers]
    assert len(layers) == len(set(layers))  # a layer belongs to one step


def test_a_changed_parameter_changes_that_step_and_its_downstream_only():
    base = pipeline.chain_keys("scan-x", {})
    changed = pipeline.chain_keys("scan-x", {"prominence": 2.0})
    differs = {name for name in base if base[name] != changed[name]}
    assert differs == {"hotmax", "hotmax-noise", "subpeaks", "element-maps", "materials",
                       "register"}


def test_flows_tasks_and_cli_take_their_defaults_from_the_table():
    import os

    os.environ.setdefault("MAXRF_SERVER", "temporary")
    from flows.process_scan import convert_scan_flow, process_scan
    from flows.watch_scans import watch_scans
    from maxrf.cli import build_parser
    from tasks.analysis import calibrate_energy
    from tasks.elementmaps import element_maps

    for fn in (process_scan.fn, convert_scan_flow.fn, watch_scans.fn, calibrate_energy.fn,
               element_maps.fn):
        for name, p in inspect.signature(fn).parameters.items():
            if name in pipeline.PARAMS and p.default is not p.empty:
                assert p.default == pipeline.default(name), (fn.__name__, name)
        for name in inspect.signature(fn).parameters:
            if fn in (process_scan.fn, watch_scans.fn) and name in pipeline.PARAMS:
                assert pipeline.PARAMS[name].description in " ".join(fn.__doc__.split())
    args = build_parser().parse_args(["process", "x.raw"])
    for name in ("sigma", "anode", "tube_kv", "precision_bits", "fingerprint", "prominence"):
        assert getattr(args, name) == pipeline.default(name), name
