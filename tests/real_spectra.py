"""Real XRF spectra shipped in PyMca5's PyMcaData (a test dependency; read in place, never
copied into the repository), spread over small scans, with the reference axes fitted to their
identified peaks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# XRFSpectrum.mca: peaks identified by hand (channel of the maximum after a 3-channel smoothing)
XRF_PEAKS = {"Fe Ka": (1372, 6.404), "Co Ka": (1476, 6.930), "Ni Ka": (1584, 7.478),
             "Cu Ka": (1697, 8.047), "Zn Ka": (1814, 8.638), "Pb La": (2193, 10.551),
             "Pb Lb1": (2603, 12.614), "Sr Ka": (2911, 14.165)}
# Steel.spe: PyMca's own configuration (Steel.cfg) zero and gain
STEEL_AXIS = (-0.00612446976449, 0.0119281593146)


def pymca_data(name: str) -> Path:
    pymca = pytest.importorskip("PyMca5")
    return Path(os.path.dirname(pymca.__file__)) / "PyMcaData" / name


def xrf_spectrum() -> np.ndarray:
    """PyMca5's XRFSpectrum.mca (4096 channels; monochromatic ~17.5 keV, Compton >> Rayleigh)."""
    lines = pymca_data("XRFSpectrum.mca").read_text().splitlines()
    return np.array([float(x) for x in lines if x.strip() and not x.startswith("#")])


def steel_spectrum() -> np.ndarray:
    """PyMca5's Steel.spe (2048 channels, 16 keV excitation)."""
    text = pymca_data("Steel.spe").read_text()
    return np.array(text.split("$DATA:")[1].split()[2:], dtype=float)


def xrf_reference_axis() -> tuple[float, float]:
    """(offset keV, gain keV/channel) fitted to XRFSpectrum.mca's identified peaks."""
    ch, en = np.array(list(XRF_PEAKS.values()), dtype=float).T
    gain, offset = np.polyfit(ch, en, 1)
    return float(offset), float(gain)


def scan_of(spectrum: np.ndarray, shape: tuple[int, int], counts: float | None = None,
            seed: int = 0) -> np.ndarray:
    """A (h, w, channels) cube of one real spectrum: every pixel the whole spectrum, or Poisson
    draws of ``counts`` counts per pixel from its shape."""
    h, w = shape
    if counts is None:
        return np.broadcast_to(spectrum, (h, w, spectrum.size)).copy()
    rng = np.random.default_rng(seed)
    lam = spectrum / spectrum.sum() * counts
    return rng.poisson(np.broadcast_to(lam, (h, w, spectrum.size)))
