"""Live time per pixel from a zero-energy pulser peak (issue #23): a generated scan with a
10 kHz pulser and count-rate dependent dead time, through the CLI."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import run_maxrf

from maxrf.datastack import DataStack
from maxrf.demo import DemoSpec, generate_scan
from maxrf.errors import MaxrfError
from maxrf.pipeline.livetime import per_live_second, zero_peak_channels


def test_live_time_from_the_pulser_peak(tmp_path):
    generate_scan(tmp_path / "p", DemoSpec(height=16, width=24, seed=8, counts=4000,
                                           pulser_hz=10_000, dwell_ms=30))
    r = run_maxrf("process", tmp_path / "p.raw", "--no-plots", "--pulser-hz", "10000",
                  "--dwell-ms", "30")
    assert r.returncode == 0, r.stderr
    ds = DataStack(tmp_path / "p.datastack")
    live, dead = ds.read("maxrf_livetime"), ds.read("maxrf_deadtime")
    truth = np.load(tmp_path / "p.truth.npz")["livetime_s"]
    assert ds.attrs("maxrf_livetime")["units"] == "s"
    assert abs(live.mean() / truth.mean() - 1) < 0.01  # the target: within 1 %
    # per pixel: the pulses lost to dead time are binomial: z-scores of about unit spread
    shots = 300
    sd = np.sqrt(shots * (truth / 0.03) * (1 - truth / 0.03)) / 10_000
    z = (live - truth) / sd
    assert abs(z.mean()) < 0.2 and 0.7 < z.std() < 1.3, (z.mean(), z.std())
    np.testing.assert_allclose(dead, 1 - live / 0.03, rtol=1e-5)
    assert 0.03 < float(dead.mean()) < 0.3  # count-rate dependent, as planted
    # element maps per live second
    maps = ds.read("maxrf_elementmaps")
    cps = per_live_second(maps, live)
    np.testing.assert_allclose(cps[:, 3, 4], maps[:, 3, 4] / live[3, 4], rtol=1e-5)


def test_no_pulser_no_live_time_step(tmp_path):
    generate_scan(tmp_path / "n", DemoSpec(height=8, width=8, seed=1))
    r = run_maxrf("process", tmp_path / "n.raw", "--no-plots", "--no-maps")
    assert r.returncode == 0 and "livetime" not in r.stdout
    assert "maxrf_livetime" not in DataStack(tmp_path / "n.datastack")


@pytest.mark.parametrize("args", [["--pulser-hz", "-5"], ["--pulser-hz", "10000",
                                                          "--dwell-ms", "0"]])
def test_bad_pulser_parameters_are_one_line(tmp_path, args):
    generate_scan(tmp_path / "b", DemoSpec(height=4, width=4, seed=1))
    r = run_maxrf("process", tmp_path / "b.raw", *args, env={"MAXRF_SERVER": "temporary"})
    assert r.returncode == 2 and "must be a positive number" in r.stderr
    assert not (tmp_path / "b.datastack").exists()


def test_zero_peak_needs_zero_on_the_axis():
    with pytest.raises(MaxrfError, match="zero-energy peak"):
        zero_peak_channels(0.5 + 0.01 * np.arange(100), 0.07)
    lo, hi = zero_peak_channels(-0.956 + 0.010002 * np.arange(4096), 0.0715)
    assert 80 < lo < 96 < hi < 112
