"""Hotmax analysis: the pixels where the peaks of the max spectrum reach their maximum, and the
spectra there, with a rolling-ball baseline, a Poisson noise line and the sub-peaks above it.

No pass over the cube is needed: ``maxrf_maxpixels`` (from the conversion) already says where
every channel peaks, so only the hotmax spectra themselves are read (one chunk each).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import grey_opening, uniform_filter1d

from maxrf.errors import SpectrumError
from maxrf.xrf.lines import element_lines

NOISE_ALPHA, NOISE_BETA = 0.6, 0.1
# Elements considered when labelling a peak with candidate lines (K, L and M series).
LABEL_ELEMENTS = (
    "Al",
    "Si",
    "P",
    "S",
    "Cl",
    "Ar",
    "K",
    "Ca",
    "Ti",
    "V",
    "Cr",
    "Mn",
    "Fe",
    "Co",
    "Ni",
    "Cu",
    "Zn",
    "As",
    "Se",
    "Br",
    "Rb",
    "Sr",
    "Zr",
    "Mo",
    "Rh",
    "Pd",
    "Ag",
    "Cd",
    "Sn",
    "Sb",
    "I",
    "Ba",
    "W",
    "Pt",
    "Au",
    "Hg",
    "Pb",
    "Bi",
)


@dataclass
class HotmaxPixels:
    """Peaks of the max spectrum and where they come from."""

    peaks: np.ndarray  # (N,) channels
    pixels: np.ndarray  # (N, 3) row, col, channel
    spots: np.ndarray  # (M, 2) unique row, col in order of first peak
    peak_idxs: list[np.ndarray]  # per spot: the max-spectrum peak channels it holds


def find_hotmax_pixels(
    maxspectrum: np.ndarray, maxpixels: np.ndarray, prominence: float | None = None
) -> HotmaxPixels:
    """Peaks of the max spectrum (``prominence`` in its units; default: noise-based) and pixels."""
    y = np.asarray(maxspectrum, dtype=np.float64)
    if y.ndim != 1 or not np.all(np.isfinite(y)):
        raise SpectrumError("max spectrum must be 1-D and finite")
    if np.ptp(y) <= 0:
        raise SpectrumError("max spectrum is flat: no peaks")
    if prominence is None:
        prominence = default_prominence(y)
    peaks, _ = _find_peaks(y, prominence=prominence)
    if peaks.size == 0:
        raise SpectrumError(f"no peaks in the max spectrum with prominence >= {prominence:.3g}")
    pixels = np.column_stack([np.asarray(maxpixels)[peaks], peaks]).astype(np.int64)
    spots, first, inverse = np.unique(pixels[:, :2], axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)  # keep the order in which spots first appear along the spectrum
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    spot_of_peak = rank[inverse.reshape(-1)]
    spots = spots[order]
    peak_idxs = [peaks[spot_of_peak == i] for i in range(spots.shape[0])]
    return HotmaxPixels(peaks, pixels, spots, peak_idxs)


def default_prominence(y: np.ndarray) -> float:
    """Peaks must stand out of the max spectrum's own noise: 4x the median noise-line height."""
    base = rolling_ball(y, radius=max(8, y.size // 100))
    noise = NOISE_ALPHA * np.sqrt(np.maximum(base, 0) + NOISE_BETA**2)
    return float(max(4 * np.median(noise), 1e-3 * y.max()))


def rolling_ball(y: np.ndarray, radius: int = 40) -> np.ndarray:
    """Baseline under a spectrum: the lowest track of a flat-bottomed ball ``2*radius + 1``
    channels wide rolled underneath (a grey opening), smoothed over the same width and never
    above the spectrum. Peaks narrower than the ball are cut off; slow background is followed."""
    y = np.asarray(y, dtype=np.float64)
    size = 2 * max(1, int(radius)) + 1
    base = grey_opening(y, size=size, mode="nearest")
    base = uniform_filter1d(base, size=size, mode="nearest")
    return np.minimum(base, y)


def noise_line(baseline: np.ndarray, alpha: float = NOISE_ALPHA, beta: float = NOISE_BETA):
    """Poisson noise envelope above a baseline: ``b + alpha * sqrt(b + beta**2)``."""
    b = np.maximum(np.asarray(baseline, dtype=np.float64), 0.0)
    return b + alpha * np.sqrt(b + beta**2)


def baselines_and_noise(spectra: np.ndarray, radius: int = 40):
    """Rolling-ball baselines and noise lines of each spectrum (rows)."""
    spectra = np.atleast_2d(np.asarray(spectra, dtype=np.float64))
    base = np.array([rolling_ball(s, radius) for s in spectra]).reshape(spectra.shape)
    return base, noise_line(base)


def subpeaks(spectra: np.ndarray, noiselines: np.ndarray) -> list[np.ndarray]:
    """Peaks of each spectrum that rise above its noise line."""
    out = []
    for s, n in zip(np.atleast_2d(spectra), np.atleast_2d(noiselines), strict=True):
        idx, _ = _find_peaks(s)
        out.append(idx[s[idx] > n[idx]].astype(np.int64))
    return out


def candidate_lines(energy_kev: float, tolerance_kev: float = 0.1, top: int = 3) -> list[str]:
    """Element lines near ``energy_kev``, nearest first (e.g. ``["Fe Ka", "Mn Kb"]``)."""
    found = []
    for el in LABEL_ELEMENTS:
        for name, (e, w) in element_lines(el).items():
            d = abs(e - energy_kev)
            if d <= tolerance_kev and w >= 0.05:
                found.append((d / max(w, 0.05) ** 0.25, f"{el} {name}"))
    return [name for _d, name in sorted(found)[:top]]


def peak_table(hot: HotmaxPixels, maxspectrum: np.ndarray, energies: np.ndarray | None):
    """One row per max-spectrum peak: channel, energy, height, pixel, spot and candidate lines."""
    spot_index = {tuple(s): i for i, s in enumerate(hot.spots.tolist())}
    rows = []
    for r, c, ch in hot.pixels.tolist():
        energy = float(energies[ch]) if energies is not None else float("nan")
        rows.append(
            {
                "channel": ch,
                "energy_kev": energy,
                "height": float(maxspectrum[ch]),
                "row": r,
                "col": c,
                "spot": spot_index[(r, c)],
                "candidates": ", ".join(candidate_lines(energy)) if energies is not None else "",
            }
        )
    import pandas as pd  # ~0.25 s to import: only when a table is made

    return pd.DataFrame(rows)


def _find_peaks(y, **kwargs):
    """``scipy.signal.find_peaks``, imported on first use (scipy.signal takes ~0.4 s to import)."""
    from scipy.signal import find_peaks

    return find_peaks(y, **kwargs)
