"""X-ray emission lines: anode tube lines and the lines of pigment elements, with energies (keV)
and relative intensities from xraylib (a pinned dependency)."""

from __future__ import annotations

import re
from functools import cache
from typing import NamedTuple

import numpy as np

from maxrf.xrf.defaults import ANODES, DEFAULT_ANODE, DEFAULT_TUBE_KV, TUBE_KV_RANGE
from maxrf.xrf.detector import fwhm_kev

ELECTRON_REST_KEV = 510.99895
# Elements a painting may show (the one list: element proposals take their candidates from it,
# the tube's anode excluded where its scatter would hide it). Ga, Ge, Y, Nb, Tl: in reference
# standards such as PyMca's spectra.
PAINTING_ELEMENTS = (
    "Al", "Si", "P", "S", "Cl", "Ar", "K", "Ca", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu",
    "Zn", "Ga", "Ge", "As", "Se", "Br", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Ag", "Cd", "Sn", "Sb",
    "I", "Ba", "W", "Pt", "Au", "Hg", "Tl", "Pb", "Bi",
)  # fmt: skip
# ... of which these are rare enough that a peak on their lines says little about an energy
# axis (a calibration judges candidate axes by the lines of the others)
RARE_IN_PAINTINGS = ("Al", "Si", "V", "Ga", "Ge", "Rb", "Y", "Zr", "Nb", "I", "Pt", "Tl")

def monochromatic(anode: str | float) -> float | None:
    """The beam energy (keV) when ``anode`` names one (a monochromatic source), else None."""
    try:
        return float(anode)
    except (TypeError, ValueError):
        return None


def anode_lines(anode: str | float, tube_kv: float | None = None) -> dict[str, tuple[float, float]]:
    """Energy and relative intensity of the main lines of a tube anode (K lines; L for W), or of
    a monochromatic beam when ``anode`` is an energy in keV. With ``tube_kv``, the series the
    voltage excites: below the K edge (Rh at 10 kV) the L lines, below the L3 edge the M lines,
    and none when it excites no line at all (the beam is then only the continuum)."""
    energy = monochromatic(anode)  # a number: one energy (keV), e.g. a synchrotron beam
    if energy is not None:
        if not 1.0 < energy < 150.0:
            raise ValueError(f"excitation energy {energy} keV is out of range (1-150 keV)")
        return {"E0": (energy, 1.0)}
    key = anode.strip().capitalize()
    if key not in ANODES:
        raise ValueError(f"unknown anode {anode!r} (expected one of: {', '.join(ANODES)})")
    series = tube_series(key, tube_kv)
    if series is None:
        return {}
    return {n: v for n, v in element_lines(key, None).items() if n[0] == series}


def tube_series(anode: str, tube_kv: float | None = None) -> str | None:
    """The anode's line series a tube shows: K (L for W), or the next one down when the voltage
    is below that series' edge; None when the voltage excites none."""
    import xraylib as xl

    order = ("L", "M") if anode == "W" else ("K", "L", "M")
    if tube_kv is None:
        return order[0]
    z = xl.SymbolToAtomicNumber(anode)
    edges = {"K": xl.K_SHELL, "L": xl.L3_SHELL, "M": xl.M5_SHELL}
    for series in order:
        try:
            if float(tube_kv) > xl.EdgeEnergy(z, edges[series]):
                return series
        except ValueError:
            continue
    return None


def element_lines(
    element: str, excitation_kev: float | None = 20.0
) -> dict[str, tuple[float, float]]:
    """Main K/L/M lines of an element: ``{line: (energy keV, intensity relative to the strongest
    line of its series)}``. Intensities are X-ray fluorescence cross sections at
    ``excitation_kev`` (lines whose edge lies above it are left out), or radiative rates when
    ``excitation_kev`` is None (electron excitation, as in a tube anode)."""
    lines = _xraylib_lines(element.strip().capitalize(), excitation_kev)
    if not lines:
        raise ValueError(f"no line data for element {element!r}")
    return dict(lines)


def compton_energy(energy_kev: float | np.ndarray, angle_deg: float) -> float | np.ndarray:
    """Energy after Compton scattering through ``angle_deg``."""
    cos = np.cos(np.radians(angle_deg))
    return energy_kev / (1.0 + energy_kev / ELECTRON_REST_KEV * (1.0 - cos))


def compton_angle(energy_kev: float, compton_kev: float) -> float:
    """Scatter angle (degrees) that shifts ``energy_kev`` down to ``compton_kev``."""
    cos = 1.0 - ELECTRON_REST_KEV * (1.0 / compton_kev - 1.0 / energy_kev)
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


@cache
def _xraylib_lines(element: str, excitation_kev: float | None) -> dict[str, tuple[float, float]]:
    import xraylib as xl

    try:
        z = xl.SymbolToAtomicNumber(element)
    except ValueError:
        return {}
    groups = {
        "Ka": (xl.KL3_LINE, xl.KL2_LINE),
        "Kb": (xl.KM3_LINE, xl.KM2_LINE),
        "La": (xl.L3M5_LINE, xl.L3M4_LINE),
        "Lb": (xl.L2M4_LINE, xl.L3N5_LINE),
        "Lg": (xl.L2N4_LINE,),
        "Ma": (xl.M5N7_LINE,),
    }

    def weight(code: int) -> float:
        if excitation_kev is None:
            return xl.RadRate(z, code)
        return xl.CS_FluorLine_Kissel_Cascade(z, code, excitation_kev)

    out: dict[str, tuple[float, float]] = {}
    for name, codes in groups.items():
        energies, weights = [], []
        for code in codes:
            try:
                e, w = xl.LineEnergy(z, code), weight(code)
            except ValueError:
                continue
            if e > 0 and w > 0:
                energies.append(e)
                weights.append(w)
        if not energies:
            continue
        w = np.asarray(weights)
        centre = float(np.dot(energies, w) / w.sum())
        # A group wider than the detector's resolution is two peaks (W Lb1 / Lb2 are 0.29 keV
        # apart, Pb's 9 eV): its centroid would match no peak, so keep its lines apart.
        fwhm = fwhm_kev(centre)
        if len(energies) > 1 and np.ptp(energies) > fwhm:
            for i, (e, wi) in enumerate(zip(energies, weights, strict=True)):
                out[f"{name}{i + 1}"] = (float(e), float(wi))
        else:
            out[name] = (centre, float(w.sum()))
    for series in ("K", "L", "M"):  # intensities relative to the strongest line of each series
        names = [n for n in out if n[0] == series]
        if names:
            top = max(out[n][1] for n in names)
            for n in names:
                out[n] = (out[n][0], out[n][1] / top)
    return out


# ---- individual lines (multiplets) for the spectrum model ------------------------------------
_LINE_NAME = re.compile(r"^(K|L[123]|M[1-5])([KLMNOPQ][1-7]?)_LINE$")


class Line(NamedTuple):
    """One emission line: IUPAC name (``"L3M5"``), family (its initial vacancy: K, L1-L3 or
    M1-M5), energy (keV) and its
    intensity (fluorescence cross section, cm²/g, averaged over the excitation spectrum)."""

    name: str
    family: str
    energy_kev: float
    intensity: float


@cache
def line_codes() -> tuple[tuple[str, str, int], ...]:
    """Every xraylib line macro: (IUPAC name, family K/L1-L3/M1-M5, xraylib code)."""
    import xraylib as xl

    out = []
    for attr in dir(xl):
        m = _LINE_NAME.match(attr)
        if m:
            shell = m.group(1)  # K, L1-L3, M1-M5: their ratios depend on the excitation
            out.append((attr[:-5], shell, getattr(xl, attr)))
    return tuple(out)


@cache
def excitation_spectrum(anode: str | float = DEFAULT_ANODE, tube_kv: float = DEFAULT_TUBE_KV):
    """(energies keV, relative photon flux) of the beam: the anode's lines plus a Kramers
    continuum up to the tube voltage, or one energy for a monochromatic beam (a number)."""
    mono = monochromatic(anode)
    lo, hi = TUBE_KV_RANGE
    if not lo <= float(tube_kv) <= hi:  # checked for a beam's energy too: never silent
        raise ValueError(f"tube voltage {tube_kv} kV is out of range ({lo:g}-{hi:g} kV)")
    if mono is not None:
        anode_lines(mono)  # range check
        return np.array([mono]), np.array([1.0])
    lines = anode_lines(anode, tube_kv)
    e_lines = np.array([e for e, _w in lines.values() if e < tube_kv], dtype=np.float64)
    w_lines = np.array([w for e, w in lines.values() if e < tube_kv], dtype=np.float64)
    e_cont = np.linspace(1.0, float(tube_kv), 120, endpoint=False)[1:]
    w_cont = tube_kv / e_cont - 1.0
    # A continuum carrying ~1.5x the lines' photons (typical of a side-window tube + optics).
    w_cont *= 1.5 * max(w_lines.sum(), 1.0) / w_cont.sum()
    return np.concatenate([e_lines, e_cont]), np.concatenate([w_lines, w_cont])


@cache
def line_components(
    element: str,
    anode: str | float = DEFAULT_ANODE,
    tube_kv: float = DEFAULT_TUBE_KV,
    min_relative: float = 1e-3,
) -> tuple[Line, ...]:
    """Every line of ``element`` (each multiplet component separately: KL3, KL2, KM3 …) with its
    fluorescence cross section averaged over the excitation spectrum; lines weaker than
    ``min_relative`` of their family's strongest are left out (each family's share is fitted:
    absorption may make a family that is weak here the strongest one seen), and families weaker
    than ``min_relative²`` of the element's strongest line. Raises ``ValueError`` for an unknown
    symbol."""
    import xraylib as xl

    try:
        z = xl.SymbolToAtomicNumber(element.strip().capitalize())
    except ValueError:
        raise ValueError(f"unknown element symbol {element!r}") from None
    energies, flux = excitation_spectrum(anode, tube_kv)
    flux = flux / flux.sum()
    out = []
    for name, family, code in line_codes():
        try:
            energy = xl.LineEnergy(z, code)
        except ValueError:
            continue
        if energy <= 0:
            continue
        cs = 0.0
        for e, f in zip(energies, flux, strict=True):
            try:
                cs += f * xl.CS_FluorLine_Kissel_Cascade(z, code, float(e))
            except ValueError:
                pass
        if cs > 0:
            out.append(Line(name, family, float(energy), float(cs)))
    if not out:
        return ()
    top = max(line.intensity for line in out)
    fam_top: dict[str, float] = {}
    for x in out:
        fam_top[x.family] = max(fam_top.get(x.family, 0.0), x.intensity)
    keep = [x for x in out if x.intensity >= min_relative * fam_top[x.family]
            and fam_top[x.family] >= min_relative**2 * top]
    return tuple(sorted(keep, key=lambda x: x[2]))


def atomic_number(element: str) -> int:
    """Atomic number of an element symbol (``ValueError`` when unknown)."""
    import xraylib as xl

    try:
        return int(xl.SymbolToAtomicNumber(element.strip().capitalize()))
    except ValueError:
        raise ValueError(f"unknown element symbol {element!r}") from None


# IUPAC transition → the Siegbahn group a person reads on a spectrum (Kα, Kβ, Lα, Lβ, Lγ, Mα …)
_SIEGBAHN = {"KL": "Kα", "KM": "Kβ", "KN": "Kβ", "L3M": "Lα", "L2M": "Lβ", "L3N": "Lβ",
             "L1M": "Lβ", "L2N": "Lγ", "L1N": "Lγ", "L3O": "Lβ", "L2O": "Lγ", "L1O": "Lγ",
             "M5N": "Mα", "M4N": "Mβ", "M3N": "Mγ", "M3O": "Mγ"}


def siegbahn(name: str) -> str:
    """``KL3`` → ``Kα``, ``L3M5`` → ``Lα``, ``L2M4`` → ``Lβ`` … (the IUPAC name itself when
    no group fits)."""
    for prefix in sorted(_SIEGBAHN, key=len, reverse=True):
        if name.startswith(prefix):
            return _SIEGBAHN[prefix]
    return name
