"""The command line as a user meets it: JSON info, one-line errors, exit codes, --help."""

from __future__ import annotations

import json

import pytest
from helpers import run_maxrf


def test_info_json(small_scan):
    raw, truth = small_scan
    for target in (raw, raw.with_suffix(".rpl")):
        out = run_maxrf("info", target, "--json")
        assert out.returncode == 0, out.stderr
        info = json.loads(out.stdout)
        assert (info["width"], info["height"], info["depth"]) == (56, 40, 1024)
        assert info["dtype"] == "<u2" and info["offset"] == 0 and info["record_by"] == "vector"
        assert info["raw_bytes_expected"] == info["raw_bytes_actual"] == 40 * 56 * 1024 * 2
        assert info["energy"] == {"offset_kev": truth["offset_kev"], "gain_kev": truth["gain_kev"]}


def test_info_text(small_scan):
    out = run_maxrf("info", small_scan[0])
    assert out.returncode == 0 and "40 x 56 x 1024" in out.stdout


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: d / "missing.raw", "raw file not found"),
        (lambda d: (d / "x.rpl").write_text("width\tfoo\n") and d / "x.rpl", "missing required"),
    ],
)
def test_errors_are_one_line(tmp_path, setup, message):
    out = run_maxrf("info", setup(tmp_path), "--check")
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("maxrf: error: ") and message in lines[0]
    assert "Traceback" not in out.stderr


def test_size_mismatch_on_check(small_scan, tmp_path):
    raw, _ = small_scan
    short = tmp_path / "short.raw"
    short.write_bytes(raw.read_bytes()[:1000])
    (tmp_path / "short.rpl").write_bytes(raw.with_suffix(".rpl").read_bytes())
    out = run_maxrf("info", short, "--check")
    assert out.returncode == 2 and "incomplete" in out.stderr and out.stderr.count("\n") == 1


def test_debug_shows_traceback(tmp_path):
    out = run_maxrf("--debug", "info", tmp_path / "missing.raw")
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_help_everywhere():
    for cmd in ([], ["info"], ["demo-scan"], ["tree"], ["check"], ["recover"], ["repack"]):
        out = run_maxrf(*cmd, "--help")
        assert out.returncode == 0 and "usage: maxrf" in out.stdout


def test_demo_scan_command(tmp_path):
    out = run_maxrf(
        "demo-scan",
        tmp_path / "d",
        "--height",
        "8",
        "--width",
        "9",
        "--channels",
        "512",
        "--gain",
        "0.08",
        "--layout",
        "B",
        "--seed",
        "5",
    )
    assert out.returncode == 0, out.stderr
    info = json.loads(run_maxrf("info", tmp_path / "d.raw", "--json").stdout)
    assert info["energy"]["gain_kev"] == pytest.approx(0.08)
    assert json.loads((tmp_path / "d.truth.json").read_text())["seed"] == 5
    bad = run_maxrf("demo-scan", tmp_path / "e", "--height", "0")
    assert bad.returncode != 0 and bad.stderr.startswith("maxrf: error:")
