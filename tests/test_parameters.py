"""The process-scan form: every parameter described (what Prefect's deployment schema and UI
show), choices as enums, and every value checked before any work."""

from __future__ import annotations

import pytest

from maxrf.errors import MaxrfError
from maxrf.pipeline.params import check_parameters


def test_deployment_schema_describes_every_parameter():
    from prefect.utilities.callables import parameter_schema

    from flows.process_scan import convert_scan_flow, process_scan
    from flows.watch_scans import watch_scans

    for flow in (process_scan, convert_scan_flow, watch_scans):
        schema = parameter_schema(flow.fn).model_dump_for_openapi()
        props = schema["properties"]
        missing = [name for name, p in props.items() if not p.get("description")]
        assert not missing, (flow.name, missing)
    props = parameter_schema(process_scan.fn).model_dump_for_openapi()["properties"]
    text = str(props["anode"])
    assert "Rh" in text and "enum" in text
    assert props["fingerprint"].get("enum") == ["quick", "full"] or "enum" in str(
        props["fingerprint"])
    assert "keV" in props["anode"]["description"] and "kV" in props["tube_kv"]["description"]


@pytest.mark.parametrize("kwargs, words", [
    ({"anode": "Xx"}, "unknown anode"),
    ({"anode": 500.0}, "out of range"),
    ({"tube_kv": 2.0}, "tube voltage"),
    ({"sigma": -1}, "sigma"),
    ({"sigma": 1e12}, "sigma"),
    ({"precision_bits": 30}, "precision_bits"),
    ({"prominence": -3.0}, "prominence"),
    ({"energies": (5.0, 1.0)}, "energies"),
    ({"energies": ("a", 1.0)}, "energies"),
    ({"fingerprint": "fast"}, "fingerprint"),
    ({"elements": ["Pb", "Qq"]}, "elements: unknown element symbol 'Qq'"),
])
def test_bad_parameters_fail_before_any_work(kwargs, words):
    with pytest.raises(MaxrfError, match=words):
        check_parameters(**kwargs)


def test_good_parameters_pass():
    check_parameters(anode="W", tube_kv=40, sigma=0, precision_bits=None, prominence=2.5,
                     energies=(-1.0, 40.0), fingerprint="full", elements=["Pb", "hg"])
    check_parameters(anode=17.5)


def test_flow_rejects_a_bad_anode_before_converting(tmp_path):
    from prefect.testing.utilities import prefect_test_harness  # noqa: F401  (import check)

    from maxrf.demo import DemoSpec, generate_scan

    generate_scan(tmp_path / "s", DemoSpec(height=8, width=8, channels=256, gain=0.16))
    from helpers import run_maxrf

    r = run_maxrf("process", tmp_path / "s.raw", "--anode", "Xx", "--no-plots", timeout=300)
    assert r.returncode == 2 and "unknown anode" in r.stderr, r.stderr
    assert not (tmp_path / "s.datastack").exists()


def test_a_watched_folder_takes_every_processing_parameter():
    """watch-scans forwards every parameter process-scan has (but the scan and its output)."""
    import inspect

    from flows.process_scan import process_scan
    from flows.watch_scans import PROCESSING, watch_scans

    scan = set(inspect.signature(process_scan.fn).parameters) - {"raw_path", "output"}
    assert scan == set(PROCESSING)
    assert scan <= set(inspect.signature(watch_scans.fn).parameters)
    for name in scan:  # the same defaults
        assert (inspect.signature(watch_scans.fn).parameters[name].default
                == inspect.signature(process_scan.fn).parameters[name].default), name


def test_cli_options_derive_from_the_table():
    """`process` and `watch` take every processing parameter, with the table's defaults and
    descriptions; bounds are checked by argparse in one line."""
    from maxrf.cli import build_parser
    from maxrf.pipeline.table import PARAMS, PROCESSING

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command" or a.choices and "process"
               in a.choices).choices
    for command in ("process", "watch"):
        actions = {}
        for a in sub[command]._actions:
            actions.setdefault(a.dest, a)  # --precision-bits before --lossless
        for name in PROCESSING:
            assert name in actions, (command, name)
            p = PARAMS[name]
            if p.kind != "bool":
                assert actions[name].default == p.default, (command, name)
            assert p.description.split()[1] in actions[name].help, (command, name)
    args = parser.parse_args(["process", "x.raw", "--no-plots", "--lossless", "--tube-kv", "40",
                              "--elements", "Pb,Hg", "--anode", "17.5", "--no-use-header"])
    from maxrf.cli.options import values

    got = values(args, PROCESSING)
    assert got["plots"] is False and got["precision_bits"] is None and got["tube_kv"] == 40.0
    assert got["elements"] == ["Pb", "Hg"] and got["anode"] == 17.5 and got["use_header"] is False
    assert got["maps"] is True and got["sigma"] == PARAMS["sigma"].default


def test_a_value_out_of_bounds_is_one_line(tmp_path):
    from helpers import run_maxrf

    r = run_maxrf("process", tmp_path / "s.raw", "--sigma", "500")
    assert r.returncode == 2 and "--sigma: must be a number from 0 to 200" in r.stderr
    assert r.stderr.strip().count("\n") <= 1, r.stderr
