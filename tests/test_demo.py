"""The synthetic scan generator: realistic statistics, determinism, truth, bounded memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from maxrf import open_raw, read_rpl
from maxrf.demo import DemoSpec, generate_scan


def test_statistics_and_truth(small_scan):
    raw, truth = small_scan
    cube = open_raw(raw).compute()
    totals = cube.sum(axis=2)
    assert 0.8 * truth["counts"] < totals.mean() < 1.2 * truth["counts"]
    assert (cube == 0).mean() > 0.5  # sparse, like real scans
    header = read_rpl(raw.with_suffix(".rpl"))
    assert header.energy.gain_kev == truth["gain_kev"]
    assert header.energy.offset_kev == truth["offset_kev"]
    assert len(truth["hotspots"]) == 3
    for spot in truth["hotspots"]:
        ch = int(round(spot["channel"]))
        window = cube[:, :, ch - 2 : ch + 3].sum(axis=2)
        assert np.unravel_index(window.argmax(), window.shape) == (spot["row"], spot["col"])


def test_rayleigh_and_compton_where_truth_says(small_scan):
    raw, truth = small_scan
    total = open_raw(raw).compute().sum(axis=(0, 1)).astype(float)
    ch = lambda e: int(round((e - truth["offset_kev"]) / truth["gain_kev"]))  # noqa: E731
    ray = ch(truth["rayleigh_kev"]["Ka"])
    assert total[ray - 3 : ray + 4].sum() > 5 * total[ray + 40 : ray + 47].sum()
    assert truth["compton_kev"]["Ka"] < truth["rayleigh_kev"]["Ka"]


def test_deterministic_per_seed(tmp_path):
    spec = DemoSpec(height=6, width=5, channels=256, gain=0.16, seed=11)
    generate_scan(tmp_path / "a", spec)
    generate_scan(tmp_path / "b", spec)
    generate_scan(tmp_path / "c", DemoSpec(height=6, width=5, channels=256, gain=0.16, seed=12))
    a, b, c = (Path(tmp_path / f"{n}.raw").read_bytes() for n in "abc")
    assert a == b and a != c
    assert json.loads((tmp_path / "a.truth.json").read_text())["seed"] == 11


def test_bounded_memory_for_a_large_scan(tmp_path):
    """384x384x4096 (1.2 GB) is generated in a few hundred MB of RAM."""
    code = (
        "from maxrf.demo import DemoSpec, generate_scan;"
        f"generate_scan(r'{tmp_path}/big', DemoSpec(height=384, width=384));"
        "print(open('/proc/self/status').read())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # VmHWM: this process's own peak RSS (ru_maxrss would include the forked pytest parent's)
    hwm = next(line for line in out.stdout.splitlines() if line.startswith("VmHWM"))
    rss_mb = int(hwm.split()[1]) / 1024
    assert (tmp_path / "big.raw").stat().st_size == 384 * 384 * 4096 * 2
    assert rss_mb < 500, rss_mb


@pytest.mark.parametrize("anode", ["W", "Cr"])
def test_demo_summary_line_without_a_scatter_angle(tmp_path, capsys, anode):
    """`make demo` with an anode whose calibration has no scatter angle still prints the energy
    axis and hot-spot comparison (the angle's condition once swallowed the whole line)."""
    from maxrf.pipeline import steps
    from maxrf.pipeline.convert import convert

    os.environ.setdefault("MAXRF_SERVER", "temporary")
    from flows.commands import _compare_with_truth

    generate_scan(tmp_path / "d", DemoSpec(height=16, width=24, seed=1, anode=anode))
    out = tmp_path / "d.datastack"
    convert(tmp_path / "d.raw", out, progress=False)
    steps.calibrate_layers(out, anode)
    steps.hotmax_layers(out)
    _compare_with_truth(str(out), tmp_path / "d.truth.json")
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("vs ground truth: energy axis within") and "hot spots found" in line
