"""Calibration against generated truth (anodes, angles, gains, offsets, channel counts), the real
Steel.spe spectrum from PyMca5, manual overrides and bad spectra."""

from __future__ import annotations

import os

import numpy as np
import pytest

from maxrf import open_raw
from maxrf.demo import DemoSpec, generate_scan
from maxrf.errors import CalibrationError, SpectrumError
from maxrf.io.rpl import EnergyCalibration
from maxrf.xrf.calibrate import calibrate, manual_calibration
from maxrf.xrf.smoothing import smooth_spectra

CASES = [  # anode, channels, gain keV/ch, offset keV, scatter angle
    ("Rh", 4096, 0.010002, -0.956, 100),
    ("Rh", 8192, 0.0047, 0.203, 125),
    ("Mo", 4096, 0.0078, -0.118, 62),
    ("Ag", 4096, 0.0086, -0.613, 131),
    ("W", 4096, 0.0084, -0.192, 76),
    ("Cr", 4096, 0.0051, -0.562, 110),
    ("Cu", 8192, 0.0036, -0.977, 138),
    ("Rh", 2048, 0.0194, -0.3, 140),
    ("Mo", 1024, 0.0391, -0.229, 109),
    ("Cr", 1024, 0.0246, -0.133, 135),
]


def mean_spectrum(tmp_path, anode, channels, gain, offset, angle, layout="A"):
    spec = DemoSpec(
        height=32,
        width=32,
        channels=channels,
        gain=gain,
        offset=offset,
        anode=anode,
        angle=angle,
        seed=channels + int(angle),
        layout=layout,
    )
    generate_scan(tmp_path / "s", spec)
    cube = open_raw(tmp_path / "s.raw").compute()
    return cube.reshape(-1, channels).mean(axis=0)  # as maxrf_rawmeanspectrum


@pytest.mark.parametrize("anode, channels, gain, offset, angle", CASES)
def test_generated_truth(tmp_path, anode, channels, gain, offset, angle):
    y = mean_spectrum(tmp_path, anode, channels, gain, offset, angle)
    cal = calibrate(y, anode=anode, smoothing_sigma=0, counts_scale=32 * 32)
    truth = offset + gain * np.arange(channels)
    inside = (truth >= 0) & (truth <= 40)
    if anode == "W":  # L lines end at 12.6 keV: judged where lines support it, and it warns
        lo, hi = cal.supported_kev
        assert hi > 12 and any("extrapolated" in w for w in cal.warnings)
        inside = (truth >= lo) & (truth <= hi)
    err_ev = np.abs(cal.energies() - truth)[inside].max() * 1000
    assert err_ev <= 5.0, (err_ev, [(m.name, m.residual_ev) for m in cal.landmarks])
    assert len(cal.landmarks) >= 5
    if anode in ("Rh", "Mo", "Ag"):  # a clear Compton peak: the angle is recovered (the
        # whole-spectrum fit models its shoulder; the landmark fit alone was 1-2° high)
        assert cal.scatter_angle_deg == pytest.approx(angle, abs=1.0)
    attrs = cal.attrs()
    assert attrs["anode"] == anode and attrs["landmarks"][0]["channel"] > 0


@pytest.mark.parametrize("tube_kv, angle", [(30.0, 95), (40.0, 120)])
def test_tube_voltages(tmp_path, tube_kv, angle):
    spec = DemoSpec(height=32, width=32, gain=0.0099, offset=-0.7, angle=angle,
                    tube_kv=tube_kv, seed=int(tube_kv))
    generate_scan(tmp_path / "s", spec)
    y = open_raw(tmp_path / "s.raw").compute().reshape(-1, 4096).mean(axis=0)
    cal = calibrate(y, "Rh", smoothing_sigma=0, counts_scale=32 * 32, tube_kv=tube_kv)
    truth = -0.7 + 0.0099 * np.arange(4096)
    inside = (truth >= 0) & (truth <= 40)
    assert np.abs(cal.energies() - truth)[inside].max() * 1000 <= 5.0
    assert cal.noise_fwhm_kev == pytest.approx(0.0715, rel=0.15)
    assert cal.fano == pytest.approx(0.115, rel=0.25)
    assert cal.refinement["kept"] in ("refined", "landmarks")


def test_header_calibration_is_the_start_and_is_checked(tmp_path):
    y = mean_spectrum(tmp_path, "Rh", 4096, 0.010002, -0.956, 100)
    cal = calibrate(y, "Rh", header=EnergyCalibration(-0.95, 0.01), smoothing_sigma=0)
    assert "header" in cal.method
    ch = np.arange(4096)
    truth = -0.956 + 0.010002 * ch
    header_err = np.abs(-0.95 + 0.01 * ch - truth).max() * 1000
    assert 1 < cal.header_agreement_ev < 60  # reported: how far the header's axis is off
    assert np.abs(cal.energies() - truth).max() * 1000 < min(5, header_err)


def test_real_steel_spectrum_from_pymca():
    pymca = pytest.importorskip("PyMca5")
    path = os.path.join(os.path.dirname(pymca.__file__), "PyMcaData", "Steel.spe")
    y = np.array(open(path).read().split("$DATA:")[1].split()[2:], dtype=float)
    cal = calibrate(y, anode=16.0, smoothing_sigma=0)  # 16 keV monochromatic excitation
    fe = next(m for m in cal.landmarks if m.name == "Fe Ka")
    published = -0.00612446976449 + 0.0119281593146 * fe.channel  # Steel.cfg zero and gain
    ours = cal.offset_kev + cal.gain_kev * fe.channel + cal.quadratic_kev * fe.channel**2
    assert abs(ours - published) * 1000 <= 10
    assert abs(ours - 6.4) < 0.01


def test_smoothed_mean_spectrum_also_calibrates(tmp_path):
    """Datastacks without maxrf_rawmeanspectrum: the smoothed mean (sigma 7) still works."""
    y = mean_spectrum(tmp_path, "Rh", 4096, 0.010002, -0.956, 100)
    cal = calibrate(smooth_spectra(y, 7), "Rh", smoothing_sigma=7, counts_scale=32 * 32)
    assert cal.refinement["kept"] == "refined"  # the model is smoothed the same way
    truth = -0.956 + 0.010002 * np.arange(4096)
    assert np.abs(cal.energies() - truth)[truth <= 40].max() * 1000 <= 5.0


def test_manual_override():
    cal = manual_calibration(4096, energies=(-1.0, 40.0))
    assert cal.energies()[0] == -1.0 and cal.energies()[-1] == pytest.approx(40.0)
    cal = manual_calibration(1000, gain_kev=0.02, offset_kev=0.1)
    assert cal.energies()[10] == pytest.approx(0.3)
    with pytest.raises(CalibrationError):
        manual_calibration(100, energies=(5, 1))


@pytest.mark.parametrize(
    "spectrum, error, message",
    [
        (np.ones(4096), SpectrumError, "flat"),
        (np.r_[np.full(100, 5.0), np.zeros(3996)], SpectrumError, "saturated"),
        (np.r_[np.nan, np.arange(4095.0)], SpectrumError, "NaN"),
        (
            np.random.default_rng(0).poisson(50, 4096).astype(float),
            CalibrationError,
            "Check the anode",
        ),
        (np.arange(10.0), SpectrumError, "at least 64"),
    ],
)
def test_bad_spectra_fail_clearly(spectrum, error, message):
    with pytest.raises(error, match=message):
        calibrate(spectrum, "Rh")
