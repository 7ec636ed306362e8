"""`maxrf export --to rpl`: a clean Lispix copy of the raw counts that Ripple readers open."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import run_maxrf

from maxrf.datastack import DataStack
from maxrf.demo import DemoSpec, generate_scan
from maxrf.io.raw import open_raw, open_scan
from maxrf.pipeline.runner import Runner, Scan


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    generate_scan(folder / "s", DemoSpec(height=20, width=36, seed=5, layout="B"))
    out = folder / "s.datastack"
    Runner(out, {}, Scan.open(folder / "s.raw")).run(["calibrate"])
    return folder / "s.raw", out


def test_the_rpl_copy_holds_the_counts_and_the_axis(calibrated, tmp_path):
    raw, stack = calibrated
    r = run_maxrf("export", stack, "--to", "rpl", "-o", tmp_path / "copy")
    assert r.returncode == 0 and "copy.rpl" in r.stdout, r.stderr
    scan = open_scan(tmp_path / "copy.raw")  # the exact size check passes
    np.testing.assert_array_equal(np.asarray(open_raw(tmp_path / "copy.raw")),
                                  DataStack(stack).read("maxrf_raw"))
    np.testing.assert_array_equal(np.asarray(open_raw(tmp_path / "copy.raw")),
                                  np.asarray(open_raw(raw)))
    axis = DataStack(stack).read("maxrf_energies")
    got = scan.header.energy
    fitted = got.offset_kev + got.gain_kev * np.arange(axis.size)
    assert np.abs(fitted - axis).max() < 0.002  # keV, within the header's 6 digits
    text = (tmp_path / "copy.rpl").read_text()
    assert "depth-scale\t" in text and "record-by\tvector" in text and "depthscale" not in text


def test_rosettasciio_reads_the_copy(calibrated, tmp_path):
    rsciio = pytest.importorskip("rsciio.ripple")
    raw, stack = calibrated
    assert run_maxrf("export", stack, "-o", tmp_path / "c").returncode == 0
    (signal,) = rsciio.file_reader(str(tmp_path / "c.rpl"))
    np.testing.assert_array_equal(np.asarray(signal["data"]), np.asarray(open_raw(raw)))


def test_nothing_to_export_is_one_line(tmp_path):
    stack = tmp_path / "e.datastack"
    DataStack(stack).append(np.zeros(3), "other")
    r = run_maxrf("export", stack, "-o", tmp_path / "x")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "maxrf_raw" in r.stderr
    assert not list(tmp_path.glob("x.*"))
