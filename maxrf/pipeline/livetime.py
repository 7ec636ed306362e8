"""Live time per pixel from the detector's zero-energy pulser peak.

A Bruker M6 feeds its detector electronics a pulser at a fixed rate (10 kHz): pulses that arrive
while the electronics are busy are lost like real photons, so the counts of the peak at 0 keV
over the pulser rate are the pixel's live time (within 0.25 % of the vendor's on a real pixel,
shared/README §9). With the pixel's dwell (real) time, one minus their ratio is its dead time.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from maxrf.datastack import DataStack
from maxrf.errors import MaxrfError
from maxrf.xrf.detector import FWHM_PER_SIGMA, NOISE_FWHM_KEV

ZERO_PEAK_SIGMAS = 4.0  # the zero peak is summed over ±4 sigma of the electronic noise


def zero_peak_channels(energies: np.ndarray, noise_fwhm_kev: float | None) -> tuple[int, int]:
    """The channels ``[lo, hi)`` of the zero-energy peak on this axis."""
    sigma = (noise_fwhm_kev or NOISE_FWHM_KEV) / FWHM_PER_SIGMA
    half = ZERO_PEAK_SIGMAS * sigma
    lo = int(np.searchsorted(energies, -half, "left"))
    hi = int(np.searchsorted(energies, half, "right"))
    if lo <= 0 or hi <= lo:
        raise MaxrfError(f"the axis does not hold the whole zero-energy peak (-{half:.2f} to "
                         f"{half:.2f} keV): no live time from a pulser")
    return lo, hi


def livetime_layers(datastack: str | Path, pulser_hz: float, dwell_ms: float | None = None,
                    provenance: dict | None = None) -> dict[str, str]:
    """Write ``maxrf_livetime`` (seconds per pixel) and ``maxrf_deadtime`` (fraction of the
    dwell time, NaN without ``dwell_ms``) from the zero peak's counts (the band layers)."""
    from maxrf.pipeline.bands import BandReader

    started = time.time()
    if not (pulser_hz and np.isfinite(pulser_hz) and pulser_hz > 0):
        raise MaxrfError(f"the pulser rate must be a positive number of Hz, got {pulser_hz}")
    ds = DataStack.of(datastack)
    energies = ds.read("maxrf_energies")
    cal = ds.attrs("maxrf_energies").get("calibration", {})
    lo, hi = zero_peak_channels(energies, cal.get("noise_fwhm_kev"))
    reader = BandReader(ds.path)
    lo, hi = reader.channels_of(lo, hi, outward=True)  # whole band groups holding the peak
    counts = reader.band(lo, hi)
    live = (counts / float(pulser_hz)).astype(np.float32)
    if dwell_ms:
        dead = (1.0 - live / (float(dwell_ms) / 1000.0)).astype(np.float32)
    else:
        dead = np.full(live.shape, np.nan, np.float32)
    meta = {"step": "livetime", "params": {"pulser_hz": float(pulser_hz),
                                           "dwell_ms": None if dwell_ms is None else
                                           float(dwell_ms)},
            "zero_peak_kev": [float(energies[lo]), float(energies[hi - 1])]}
    meta.update(provenance or {})
    meta["duration_s"] = round(time.time() - started, 3)
    with ds.appending() as app:
        app.write("maxrf_livetime", live, attrs={"units": "s", "from": "zero-peak counts / "
                                                 "pulser rate"})
        app.write("maxrf_deadtime", dead, attrs={"units": "fraction of the dwell time"})
        for name in app.writers:
            app.finish(name, {"maxrf": meta})
    return app.committed


def per_live_second(maps: np.ndarray, live: np.ndarray) -> np.ndarray:
    """Element maps (…, height, width) in counts per live second (0 where no live time)."""
    live = np.asarray(live, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(live > 0, maps / np.where(live > 0, live, 1.0), 0.0)
    return out.astype(np.float32)
