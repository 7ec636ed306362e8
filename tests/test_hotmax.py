"""Hotmax detection and the analysis steps on converted generated scans (real datastacks)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from helpers import run_maxrf

from maxrf.datastack import DataStack
from maxrf.demo import DemoSpec, generate_scan
from maxrf.errors import SpectrumError
from maxrf.figures.plots import plot_all
from maxrf.pipeline import steps
from maxrf.pipeline.convert import convert
from maxrf.xrf import hotmax as hm


def analyse(raw, out, anode="Rh"):
    convert(raw, out, progress=False)
    steps.calibrate_layers(out, anode)
    steps.hotmax_layers(out)
    steps.noise_layers(out)
    steps.subpeak_layers(out)
    return DataStack(out)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    d = tmp_path_factory.mktemp("hot")
    truth = generate_scan(d / "scan", DemoSpec(height=48, width=64, hotspots=4, seed=9))
    return analyse(d / "scan.raw", d / "scan.datastack"), truth


def test_every_planted_hotspot_at_its_exact_pixel(analysed):
    ds, truth = analysed
    spots = {tuple(s) for s in ds.read("hotmax_spots").tolist()}
    pixels = ds.read("hotmax_pixels")
    for hs in truth["hotspots"]:
        assert (hs["row"], hs["col"]) in spots, hs
        near = np.abs(pixels[:, 2] - hs["channel"]) <= 3
        assert near.any() and {tuple(p) for p in pixels[near, :2].tolist()} == {
            (hs["row"], hs["col"])
        }


def test_layers_are_consistent(analysed):
    ds, truth = analysed
    spectra, spots = ds.read("hotmax_spectra"), ds.read("hotmax_spots")
    cube = ds.read("maxrf_cube")
    np.testing.assert_array_equal(spectra, cube[spots[:, 0], spots[:, 1]])
    base, noise = ds.read("hotmax_baselines"), ds.read("hotmax_noiselines")
    assert np.all(base <= spectra + 1e-5) and np.all(noise >= base)
    peaks = ds.read_list("hotmax_peak_idxs_list")
    assert sum(len(p) for p in peaks) == len(ds.read("hotmax_pixels"))
    subs = ds.read_list("hotmax_subpeak_idxs_list")
    assert len(subs) == len(spectra)
    for s, n, idx in zip(spectra, noise, subs, strict=True):
        assert np.all(s[idx] > n[idx])
    energies = ds.read("maxrf_energies")
    truth_axis = truth["offset_kev"] + truth["gain_kev"] * np.arange(energies.size)
    assert np.abs(energies - truth_axis)[truth_axis <= 40].max() < 0.005
    assert 18.5 < float(ds.read("compton_peak_energy")) < 20.1
    assert 100 < ds.attrs("maxrf_energies")["calibration"]["scatter_angle_deg"] < 120
    table = ds.array("hotmax_peak_table")
    assert table.shape[1] == 6 and len(table.attrs["candidates"]) == table.shape[0]
    csv = ds.path.with_suffix(".hotmax_peaks.csv").read_text()
    assert csv.startswith("channel,energy_kev,height,row,col,spot,candidates")
    sr = [c for c in table.attrs["candidates"] if c.startswith("Sr Ka")]
    assert sr  # the Sr hot spot's line is labelled


def test_plots_written(analysed):
    ds, _ = analysed
    paths = plot_all(ds.path)
    names = sorted(p.name.split(".")[-2] for p in paths)
    assert names == ["calibration", "hotmax", "spectra"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 20_000
        p.unlink()
    out = run_maxrf("plot", ds.path)
    assert out.returncode == 0 and "hotmax.png" in out.stdout


def test_flat_and_peakless_max_spectra_fail_clearly():
    with pytest.raises(SpectrumError, match="flat"):
        hm.find_hotmax_pixels(np.ones(100), np.zeros((100, 2), int))
    with pytest.raises(SpectrumError, match="no peaks"):
        hm.find_hotmax_pixels(np.linspace(0, 1, 100), np.zeros((100, 2), int), prominence=0.5)
    with pytest.raises(SpectrumError, match="finite"):
        hm.find_hotmax_pixels(np.r_[np.nan, np.ones(99)], np.zeros((100, 2), int))


def test_rolling_ball_and_noise_line():
    x = np.arange(1000)
    background = 50 * np.exp(-x / 400)
    peak = 200 * np.exp(-0.5 * ((x - 500) / 8) ** 2)
    base = hm.rolling_ball(background + peak, radius=40)
    assert np.all(base <= background + peak)
    assert abs(base[500] - background[500]) < 0.15 * background[500]
    assert np.allclose(hm.noise_line(np.array([0.0, 100.0])), [0.06, 100 + 0.6 * np.sqrt(100.01)])


def test_hotmax_step_speed_on_256_squared(tmp_path):
    """The whole hotmax step (pixels, spectra, noise, sub-peaks, table) on 256x256x4096."""
    truth = generate_scan(tmp_path / "big", DemoSpec(height=256, width=256, seed=4))
    out = tmp_path / "big.datastack"
    convert(tmp_path / "big.raw", out, progress=False)
    steps.calibrate_layers(out, "Rh")
    t0 = time.perf_counter()
    steps.hotmax_layers(out)
    steps.noise_layers(out)
    steps.subpeak_layers(out)
    elapsed = time.perf_counter() - t0
    assert elapsed <= 2.0, elapsed
    spots = {tuple(s) for s in DataStack(out).read("hotmax_spots").tolist()}
    assert all((h["row"], h["col"]) in spots for h in truth["hotspots"])
