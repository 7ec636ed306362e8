"""The silicon drift detector's resolution: the one formula every module uses.

FWHM(E) = sqrt(noise² + (2.3548)² · ε · F · E): electronic noise plus Fano statistics, with
ε = 3.65 eV per electron-hole pair in silicon; the defaults give ≈ 140 eV at 5.9 keV (an M6).
"""

from __future__ import annotations

import numpy as np

EPSILON_SI_KEV = 0.00365  # energy per electron-hole pair in silicon
NOISE_FWHM_KEV = 0.0715  # electronic noise (FWHM of the zero peak)
FANO = 0.115
FWHM_PER_SIGMA = 2.3548


def fwhm_kev(energy_kev, noise_fwhm_kev: float = NOISE_FWHM_KEV, fano: float = FANO):
    """The detector's FWHM (keV) at ``energy_kev`` (a number or an array; below 0 as at 0)."""
    e = np.maximum(np.asarray(energy_kev, dtype=np.float64), 0.0)
    out = np.sqrt(noise_fwhm_kev**2 + FWHM_PER_SIGMA**2 * EPSILON_SI_KEV * fano * e)
    return float(out) if out.ndim == 0 else out
