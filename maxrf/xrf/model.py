"""A physical model of an MA-XRF spectrum, as expected counts per channel.

Components (each a template of unit total counts, so its coefficient is counts):
- one per element: all its lines in range (each multiplet component at its xraylib energy and
  cross section, families K/L/M weighted by ``family_ratios``), each with its Si escape peak;
- ``rayleigh``: the anode's lines scattered elastically; ``compton``, ``compton-shoulder`` and
  ``compton-tail``: the same lines scattered inelastically at ``angle_deg``, a Doppler-broadened
  peak, a broader component below it (bound electrons, the spread of scatter angles) and an
  exponential low-energy tail (multiple scattering, incomplete charge collection);
- ``sensor``: the detector's noise peak at 0 keV;
- a smooth continuum: cubic B-splines (``continuum=n`` pieces) or, for the per-pixel fit, a given
  shape cut into a few broad overlapping pieces.
Peaks have the detector's resolution FWHM(E) = sqrt(noise² + 2.3548²·ε·F·E), integrated over each
channel's width. The same model serves the energy calibration's refinement and the element maps.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from functools import cache

import numpy as np

from maxrf.xrf.defaults import DEFAULT_ANODE, DEFAULT_TUBE_KV
from maxrf.xrf.detector import FANO, NOISE_FWHM_KEV, fwhm_kev
from maxrf.xrf.lines import anode_lines, compton_energy, line_codes, line_components, tube_series

SI_KA_KEV, SI_K_EDGE_KEV = 1.7398, 1.8389
MIN_LINE_KEV = 0.9  # lines below this are absorbed by air and the detector window
FAMILIES = ("K", "KB", "L1", "L2", "L3", "M1", "M2", "M3", "M4", "M5", "M")


def family_of(line, element: str, inst: Instrument) -> str:
    """A line's family: its initial vacancy (K, L1-L3, M1-M5). For the elements in
    ``inst.kb_free`` the K lines filled from the M and N shells (Kβ) are a family ``KB`` of
    their own: absorption in the paint moves Kβ/Kα by several per cent, which the strong line
    of a matrix element (Ca in chalk) shows."""
    if line.family == "K" and element in inst.kb_free and not line.name.startswith("KL"):
        return "KB"
    return line.family


@dataclass(frozen=True)
class Instrument:
    """The non-linear parameters of the model (what a calibration refinement fits)."""

    anode: str = DEFAULT_ANODE
    tube_kv: float = DEFAULT_TUBE_KV
    angle_deg: float = 110.0  # scatter angle
    noise_fwhm_kev: float = NOISE_FWHM_KEV  # electronic noise
    fano: float = FANO
    doppler: float = 0.012  # Compton Doppler sigma as a fraction of the Compton energy
    tail_kev: float = 0.35  # decay length of the Compton low-energy tail
    shoulder_shift: float = 1.0  # Compton shoulder centre below the peak, in Compton sigmas
    shoulder_width: float = 2.0  # Compton shoulder sigma, in Compton sigmas
    # the detector's peak shape beyond the Gaussian (hypermet-like, as PyMca and Bruker fit):
    line_tail: float = 0.0  # share of a line's counts in its low-energy tail, at 5.9 keV
    line_tail_kev: float = 0.15  # the tail's decay length
    line_shelf: float = 0.0  # share of a line's counts in a flat shelf down to 0 keV, at 5.9 keV
    kb_free: tuple[str, ...] = ()  # elements whose Kβ/Kα is fitted (a family KB; see family_of)

    def fwhm_kev(self, energy_kev):
        return np.asarray(fwhm_kev(energy_kev, self.noise_fwhm_kev, self.fano))

    def sigma_kev(self, energy_kev):
        return self.fwhm_kev(energy_kev) / 2.3548

    def attrs(self) -> dict:
        return {k: (str(v) if k == "anode" else list(v) if k == "kb_free" else float(v))
                for k, v in asdict(self).items()}

    def with_(self, **changes) -> Instrument:
        return replace(self, **changes)


@cache
def _si_mu(energy_kev: float) -> float:
    import xraylib as xl

    return float(xl.CS_Total(14, float(energy_kev)))


def escape_fraction(energy_kev: float) -> float:
    """Share of a line's photons that leave a Si detector as an escape peak (Reed & Ware)."""
    if energy_kev <= SI_K_EDGE_KEV:
        return 0.0
    omega, jump = 0.047, 10.8  # Si K fluorescence yield, K-edge jump ratio
    mu_i, mu_e = _si_mu(energy_kev), _si_mu(SI_KA_KEV)
    f = 0.5 * omega * (1 - 1 / jump) * (1 - (mu_e / mu_i) * np.log1p(mu_i / mu_e))
    return float(max(f, 0.0))


def channel_edges(energies: np.ndarray) -> np.ndarray:
    """Edges (keV) between channel centres ``energies`` (any monotonic axis)."""
    e = np.asarray(energies, dtype=np.float64)
    mid = 0.5 * (e[1:] + e[:-1])
    return np.concatenate([[2 * e[0] - mid[0]], mid, [2 * e[-1] - mid[-1]]])


def _ragged(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For windows ``[lo, hi)`` (one per line): each entry's line and index, line by line."""
    lengths = np.maximum(hi - lo, 0)
    line = np.repeat(np.arange(lengths.size), lengths)
    starts = np.cumsum(lengths) - lengths
    return line, np.arange(line.size) - (starts - lo)[line]


def _lines(centers, sigmas, weights, group) -> tuple[np.ndarray, ...]:
    arrays = [np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (centers, sigmas, weights)]
    c, s, w = np.broadcast_arrays(*arrays)
    g = np.zeros(c.shape, np.intp) if group is None else np.asarray(group, dtype=np.intp)
    return c, s, w, g


def _gather(group, bins, values, n: int, groups: int | None) -> np.ndarray:
    """Sum ``values`` into ``(groups, n)`` rows (or one row when ``groups`` is None), each bin's
    terms added in the lines' order (as a loop over the lines adds them)."""
    total = np.bincount(group * n + bins, values, minlength=(groups or 1) * n)
    return total.reshape(groups, n) if groups is not None else total


def gaussian_counts(edges: np.ndarray, centers, sigmas, weights, group=None,
                    groups: int | None = None) -> np.ndarray:
    """Sum of Gaussians (unit area × ``weights``) integrated over each channel; with ``group``
    (each line's row) and ``groups``, one row per group."""
    c, s, w, g = _lines(centers, sigmas, weights, group)
    n = edges.size - 1
    lo = np.maximum(np.searchsorted(edges, c - 7 * s) - 1, 0)
    hi = np.minimum(np.searchsorted(edges, c + 7 * s) + 1, n)
    hi = np.where(hi > lo, hi + 1, lo)  # the window's edges: one more than its channels
    line, at = _ragged(lo, hi)
    from scipy.special import erf  # here: scipy.special costs 0.2 s of every import

    cdf = 0.5 * (1 + erf((edges[at] - c[line]) / (np.sqrt(2) * s[line])))
    same = line[1:] == line[:-1]  # differences within a line's window only
    line, at = line[1:][same], at[:-1][same]
    return _gather(g[line], at, w[line] * (cdf[1:] - cdf[:-1])[same], n, groups)


def tail_counts(edges: np.ndarray, centers, sigmas, weights, tail_kev: float, group=None,
                groups: int | None = None) -> np.ndarray:
    """Gaussians convolved with a low-energy exponential tail of decay ``tail_kev`` (unit area)."""
    c, s, w, g = _lines(centers, sigmas, weights, group)
    x = 0.5 * (edges[1:] + edges[:-1])
    out = np.zeros((groups or 1, x.size))
    lo = np.searchsorted(x, c - 12 * tail_kev - 8 * s)
    hi = np.searchsorted(x, c + 8 * s)
    _compiled_tails()(x, np.diff(edges), c, s, w, g, lo, hi, float(tail_kev), out)
    return out if groups is not None else out[0]


@cache
def _compiled_tails():
    """:func:`_tails` compiled, on first use (numba's import, 0.15 s, is no part of the
    viewer's start, which uses this module's line tables only)."""
    from numba import njit

    return njit(cache=True)(_tails)


def _tails(x, width, c, s, w, g, lo, hi, t, out):  # pragma: no cover - compiled
    """Each line's tail added to its row of ``out`` over channels ``[lo, hi)``: the Gaussian ⊗
    exponential, exp(d/t + s²/2t²)·erfc((d/s + s/t)/√2) (the two factors meet in range: the
    exponent stays below ~130 and erfc above 1e-80 for any line and tail a fit can give)."""
    r2 = math.sqrt(2.0)
    for i in range(c.size):
        k = w[i] / (2 * t)
        half = 0.5 * (s[i] / t) ** 2
        for j in range(lo[i], hi[i]):
            d = x[j] - c[i]
            arg = (d / s[i] + s[i] / t) / r2
            if arg < -6.0:  # erfc is 2 to the last bit
                val = 2.0 * math.exp(d / t + half)
            elif arg < 20.0:
                val = math.exp(d / t + half) * math.erfc(arg)
            else:  # erfc underflows: exp(−d²/2s²)·erfcx(arg), erfcx ~ 1/(arg √π)
                val = math.exp(-0.5 * (d / s[i]) ** 2) / (arg * math.sqrt(math.pi)) * (
                    1 - 0.5 / (arg * arg))
            out[g[i], j] += k * width[j] * val


def element_family_lines(element: str, inst: Instrument, e_max: float) -> dict[str, list]:
    """The lines of ``element`` in range, grouped by family: ``{"K": [Line, ...], ...}``."""
    out: dict[str, list] = {}
    for line in line_components(element, inst.anode, inst.tube_kv):
        if MIN_LINE_KEV <= line.energy_kev <= e_max:
            out.setdefault(family_of(line, element, inst), []).append(line)
    return out


def _step_integral(x: np.ndarray, c: float, s: float) -> np.ndarray:
    """∫ 0.5·erfc((x − c)/(√2 s)) dx: the primitive of an error-function step down at ``c``."""
    u = (x - c) / (np.sqrt(2) * s)
    from scipy.special import erfc

    return 0.5 * ((x - c) * erfc(u) - np.sqrt(2 / np.pi) * s * np.exp(-u * u))


def shelf_counts(edges: np.ndarray, centers, sigmas, weights, group=None,
                 groups: int | None = None) -> np.ndarray:
    """Flat shelves from each line (an error-function edge at its centre) down to 0 keV, unit
    area × ``weights`` (charge lost at the detector's entrance window)."""
    c, s, w, g = _lines(centers, sigmas, weights, group)
    x0, x1 = np.maximum(edges[:-1], 0.0), np.maximum(edges[1:], 0.0)
    n = x0.size
    on = c > 0
    c, s, w, g = c[on], s[on], w[on], g[on]
    # flat (the channel's width) well below the edge: channel k gets Σ w/c of the lines whose
    # flat part reaches past it; the erfc edge near the line's centre
    a = np.searchsorted(x1, c - 6 * s)
    b = np.maximum(np.searchsorted(x0, c + 6 * s), a)
    starts = _gather(g, a, w / c, n + 1, groups)
    reach = np.cumsum(starts[..., ::-1], axis=-1)[..., ::-1][..., 1:]
    line, at = _ragged(a, b)
    cl, sl = c[line], s[line]
    step = w[line] * (_step_integral(x1[at], cl, sl) - _step_integral(x0[at], cl, sl)) / cl
    return reach * (x1 - x0) + _gather(g[line], at, step, n, groups)


def _peak_shape_shares(inst: Instrument, energies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each line's share of counts in its tail and its shelf: both larger at low energy, where
    more photons are absorbed near the entrance window (∝ 5.9 keV / E, at most 1/2)."""
    rel = np.minimum(5.9 / np.maximum(energies, 0.5), 4.0)
    tail = np.minimum(inst.line_tail * rel, 0.5)
    shelf = np.minimum(inst.line_shelf * rel, 0.25)
    return tail, shelf


def _lines_template(edges, energies, weights, inst: Instrument, group=None,
                    groups: int | None = None) -> np.ndarray:
    """Lines at ``energies`` (keV) with ``weights``, at the detector's resolution (a Gaussian
    with the instrument's low-energy tail and shelf), plus their Si escape peaks; with
    ``group`` (each line's row) and ``groups``, one row per group in one vectorised pass."""
    energies = np.asarray(energies, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    g = np.zeros(energies.shape, np.intp) if group is None else np.asarray(group, np.intp)
    sig = inst.sigma_kev(energies)
    tail, shelf = _peak_shape_shares(inst, energies)
    row = gaussian_counts(edges, energies, sig, weights * (1 - tail - shelf), g, groups)
    if inst.line_tail > 0:
        row += tail_counts(edges, energies, sig, weights * tail, inst.line_tail_kev, g, groups)
    if inst.line_shelf > 0:
        row += shelf_counts(edges, energies, sig, weights * shelf, g, groups)
    esc = np.array([escape_fraction(e) for e in energies])
    if esc.any():
        ee = energies - SI_KA_KEV
        ok = ee > 0.05
        row += gaussian_counts(edges, ee[ok], inst.sigma_kev(ee[ok]), (weights * esc)[ok],
                               g[ok], groups)
    return row


_ROWS: OrderedDict[tuple, dict[str, np.ndarray]] = OrderedDict()  # least recently used first
_ROWS_KEPT = 160  # element row sets kept (~0.3 MB each at 4096 channels): one model's worth


def _digest(values: np.ndarray) -> bytes:
    """A short hash of an axis (the caches below are keyed on the axis they were built on)."""
    return hashlib.blake2b(np.ascontiguousarray(values).tobytes(), digest_size=16).digest()


def _rows_key(element: str, digest: bytes, inst: Instrument, e_max: float) -> tuple:
    return (element, float(e_max), inst.anode, inst.tube_kv, inst.noise_fwhm_kev, inst.fano,
            inst.line_tail, inst.line_tail_kev, inst.line_shelf, element in inst.kb_free, digest)


def _family_rows(element: str, edges, inst: Instrument, e_max: float) -> dict[str, np.ndarray]:
    """Per line family of ``element``: its lines (up to ``e_max``) weighted by cross section.
    Cached on what shapes them (the axis, the resolution, the peak shape): a fit of the scatter
    parameters rebuilds the model many times with the same element rows. Read-only arrays."""
    return _families_rows([element], edges, inst, e_max)[0]


def _families_rows(elements: list[str], edges, inst: Instrument, e_max: float
                   ) -> list[dict[str, np.ndarray]]:
    """:func:`_family_rows` of several elements: the ones not cached are computed together, all
    their lines in one vectorised pass (a model rebuilt at every step of a fit needs them all)."""
    digest = _digest(edges)
    keys = [_rows_key(el, digest, inst, e_max) for el in elements]
    missing = [i for i, k in enumerate(keys) if k not in _ROWS]
    if missing:
        energies, weights, group, names = [], [], [], []
        for i in missing:
            for family, lines_ in element_family_lines(elements[i], inst, e_max).items():
                names.append((i, family))
                for x in lines_:
                    energies.append(x.energy_kev)
                    weights.append(x.intensity)
                    group.append(len(names) - 1)
        rows = _lines_template(edges, energies, weights, inst, group, len(names))
        rows.flags.writeable = False
        made: dict[int, dict[str, np.ndarray]] = {i: {} for i in missing}
        for (i, family), row in zip(names, rows, strict=True):
            made[i][family] = row
        for i in missing:
            _ROWS[keys[i]] = made[i]
    out = []
    for k in keys:
        _ROWS.move_to_end(k)
        out.append(_ROWS[k])
    while len(_ROWS) > max(_ROWS_KEPT, len(set(keys))):
        _ROWS.popitem(last=False)
    return out


def element_template(
    element: str, edges: np.ndarray, inst: Instrument, shares: dict[str, float] | None = None,
    e_max: float | None = None,
) -> np.ndarray:
    """Expected counts per channel of all lines (and escapes) of ``element``, unit total.
    Families are weighted by their cross sections, or by ``shares`` (each family's fraction of
    the counts, as fitted on the mean spectrum: self-absorption changes them per object)."""
    e_max = edges[-1] if e_max is None else e_max
    return _element_row(_family_rows(element, edges, inst, e_max), shares, edges.size - 1)


def _element_row(rows: dict[str, np.ndarray], shares: dict[str, float] | None, n: int
                 ) -> np.ndarray:
    row = np.zeros(n)
    for family, r in rows.items():
        if shares:
            r = shares.get(family, 0.0) * r / r.sum() if r.sum() > 0 else r
        row += r
    total = row.sum()
    return row / total if total > 0 else row


def nominal_family_shares(element: str, inst: Instrument, e_max: float,
                          merge_m: bool = False) -> dict[str, float]:
    """Each line family's share of ``element``'s counts by cross section (no matrix): the
    centre of the bounds a fit lets the shares move within."""
    sums: dict[str, float] = {}
    for family, lines_ in element_family_lines(element, inst, e_max).items():
        key = "M" if merge_m and family.startswith("M") else family
        sums[key] = sums.get(key, 0.0) + sum(x.intensity for x in lines_)
    total = sum(sums.values())
    return {f: v / total for f, v in sums.items()} if total > 0 else {}


def family_templates(
    element: str, edges: np.ndarray, inst: Instrument, e_max: float | None = None,
    merge_m: bool = False,
) -> dict[str, np.ndarray]:
    """One unit-total template per line family of ``element`` in range (lines up to
    ``e_max``); with ``merge_m`` the M subshells are one family ``M`` (each alone is too weak
    to tell an element by)."""
    e_max = edges[-1] if e_max is None else e_max
    return _family_units(_family_rows(element, edges, inst, e_max), merge_m)


def _family_units(rows: dict[str, np.ndarray], merge_m: bool) -> dict[str, np.ndarray]:
    if merge_m:
        m = [f for f in rows if f.startswith("M")]
        if m:
            rows = {f: r for f, r in rows.items() if f not in m} | {"M": sum(rows[f] for f in m)}
    return {f: r / r.sum() for f, r in rows.items() if r.sum() > 0}


@cache
def tube_lines(anode: str, tube_kv: float) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """The tube's lines by initial vacancy (K lines; L1, L2, L3 for W): ``{family: (energies,
    relative rates within the family, the family's prior share)}``; one energy for a
    monochromatic beam. Rates within a subshell are radiative rates; the subshells' shares (how
    often the electrons ionise each) are a prior that fits on the mean spectrum replace."""
    try:
        float(anode)
        lines = anode_lines(anode)
        return {"K": (np.array([v[0] for v in lines.values()]), np.array([1.0]), 1.0)}
    except (TypeError, ValueError):
        pass
    import xraylib as xl

    main = tube_series(str(anode).strip().capitalize(), tube_kv)  # as anode_lines
    if main is None:  # the voltage excites none of the anode's lines: continuum only
        return {}
    z = xl.SymbolToAtomicNumber(anode)
    codes = {name: code for name, _fam, code in line_codes()}
    # electron impact ionises the subshells much as photons of ~0.6 x the voltage do
    edge = xl.EdgeEnergy(z, {"K": xl.K_SHELL, "L": xl.L3_SHELL, "M": xl.M5_SHELL}[main])
    e_exc = min(max(0.6 * tube_kv, 1.1 * edge), tube_kv)
    out = {}
    for comp in line_components(anode, anode, tube_kv):
        if comp.family[0] != main or comp.energy_kev >= tube_kv:
            continue
        try:
            rate = xl.RadRate(z, codes[comp.name])
            cs = xl.CS_FluorLine_Kissel_Cascade(z, codes[comp.name], e_exc)
        except (ValueError, KeyError):
            continue
        e, r, share = out.get(comp.family, ([], [], 0.0))
        out[comp.family] = (e + [comp.energy_kev], r + [rate], share + cs)
    total = sum(v[2] for v in out.values())
    result = {}
    for fam, (e, r, share) in out.items():
        e, r = np.array(e), np.array(r)
        keep = r > 1e-3 * r.max()
        if keep.any() and share > 0:
            result[fam] = (e[keep], r[keep] / r[keep].sum(), share / total)
    return result


def scatter_templates(
    edges: np.ndarray, inst: Instrument, shares: dict[str, float] | None = None,
    split: bool = False,
) -> dict[str, np.ndarray]:
    """``rayleigh``, ``compton``, ``compton-shoulder`` and ``compton-tail`` templates (unit total
    each): the tube's lines, their subshells weighted by ``shares`` (else the prior), or with
    ``split`` one set per subshell (``rayleigh-L3`` …) when the tube has several."""
    fams = tube_lines(inst.anode, inst.tube_kv)
    if not fams:  # no tube line is excited: the continuum scatters, modelled by the background
        return {}
    if split and len(fams) > 1:
        groups = {f"-{f}": {f: 1.0} for f in fams}
    else:
        prior = {f: v[2] for f, v in fams.items()}
        given = {f: float(shares[f]) for f in fams if shares and f in shares}
        groups = {"": {**prior, **given} if given else prior}
    out = {}
    for suffix, weights in groups.items():
        e = np.concatenate([fams[f][0] for f in fams])
        w = np.concatenate([fams[f][1] * weights.get(f, 0.0) for f in fams])
        rows = {"rayleigh": _lines_template(edges, e, w, inst)}
        ec = np.asarray(compton_energy(e, inst.angle_deg), dtype=np.float64)
        sig = np.hypot(inst.sigma_kev(ec), inst.doppler * ec)
        rows["compton"] = gaussian_counts(edges, ec, sig, w)
        rows["compton-shoulder"] = gaussian_counts(edges, ec - inst.shoulder_shift * sig,
                                                   inst.shoulder_width * sig, w)
        rows["compton-tail"] = tail_counts(edges, ec, sig, w, inst.tail_kev)
        for k, row in rows.items():
            s = row.sum()
            out[k + suffix] = row / s if s > 0 else row
    return out


def pileup_shape(energies: np.ndarray, counts: np.ndarray, min_kev: float = 0.5
                 ) -> np.ndarray | None:
    """The shape (unit total) of pile-up in a spectrum ``counts``: two photons counted as one at
    the sum of their energies, i.e. the spectrum convolved with itself on the energy axis (the
    noise or pulser peak below ``min_kev`` left out). None when there are no photons."""
    e = np.asarray(energies, dtype=np.float64)
    y = np.where(e >= min_kev, np.clip(np.asarray(counts, dtype=np.float64), 0, None), 0.0)
    if y.sum() <= 0 or e.size < 2:
        return None
    gain = (e[-1] - e[0]) / (e.size - 1)
    conv = np.convolve(y, y)
    at = 2 * e[0] + gain * np.arange(conv.size)  # the energy of each sum
    shape = np.interp(e, at, conv, left=0.0, right=0.0)
    return shape / shape.sum() if shape.sum() > 0 else None


_BASES: OrderedDict[tuple, np.ndarray] = OrderedDict()


def bspline_basis(x: np.ndarray, lo: float, hi: float, pieces: int) -> np.ndarray:
    """``pieces + 3`` cubic B-splines over [lo, hi] evaluated at ``x`` (zero outside); read-only,
    cached (a fit rebuilds its model on the same axis many times)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    key = (float(lo), float(hi), int(pieces), _digest(x))
    basis = _BASES.get(key)
    if basis is None:
        from scipy.interpolate import BSpline  # ~0.7 s to import: only when a basis is made

        inner = np.linspace(lo, hi, pieces + 1)
        t = np.concatenate([[lo] * 3, inner, [hi] * 3])
        n = len(t) - 4
        xx = np.clip(x, lo, hi)
        rows = []
        for i in range(n):
            c = np.zeros(n)
            c[i] = 1.0
            b = BSpline(t, c, 3, extrapolate=False)(xx)
            rows.append(np.where((x >= lo) & (x <= hi), np.nan_to_num(b), 0.0))
        basis = np.array(rows)
        basis.flags.writeable = False
        _BASES[key] = basis
        while len(_BASES) > 8:
            _BASES.popitem(last=False)
    _BASES.move_to_end(key)
    return basis


@dataclass
class SpectrumModel:
    """Templates (components × channels) of expected counts per unit coefficient."""

    names: list[str]
    kinds: list[str]  # "element", "scatter", "sensor", "pileup", "continuum"
    templates: np.ndarray
    energies: np.ndarray
    instrument: Instrument

    @property
    def element_rows(self) -> list[int]:
        return [i for i, k in enumerate(self.kinds) if k == "element"]

    @property
    def elements(self) -> list[str]:
        return [self.names[i] for i in self.element_rows]


def build_model(
    energies: np.ndarray,
    elements: list[str],
    inst: Instrument,
    fit_range: tuple[float, float],
    continuum: int | np.ndarray = 12,
    pieces: int = 4,
    ratios: dict[str, dict[str, float]] | None = None,
    split_families: bool = False,
    sensor: bool = True,
    tube_shares: dict[str, float] | None = None,
    merge_m: bool = False,
    pileup: np.ndarray | None = None,
) -> SpectrumModel:
    """The model on the axis ``energies`` (channel centres, keV); element templates hold the
    lines up to the end of ``fit_range`` (their counts are what the fit measures). ``continuum``
    is a number of B-spline pieces over ``fit_range``, or a shape (one value per channel) cut
    into ``pieces`` broad pieces. ``split_families``: one component per line family
    (``Pb-L3``), and per subshell of the tube's lines (``rayleigh-L3``, for W); ``tube_shares``:
    the tube subshells' shares as fitted; ``merge_m``: one M family per element; ``pileup``: the
    shape of pile-up (:func:`pileup_shape`), a component of its own."""
    energies = np.asarray(energies, dtype=np.float64)
    edges = channel_edges(energies)
    names, kinds, rows = [], [], []
    # every element's lines in one pass
    for el, fams in zip(elements, _families_rows(list(elements), edges, inst, fit_range[1]),
                        strict=True):
        if split_families:
            for fam, row in _family_units(fams, merge_m).items():
                names.append(f"{el}-{fam}")
                kinds.append("element")
                rows.append(row)
        else:
            names.append(el)
            kinds.append("element")
            rows.append(_element_row(fams, (ratios or {}).get(el), edges.size - 1))
    for name, row in scatter_templates(edges, inst, tube_shares, split_families).items():
        names.append(name)
        kinds.append("scatter")
        rows.append(row)
    if sensor:
        names.append("sensor")
        kinds.append("sensor")
        rows.append(gaussian_counts(edges, [0.0], [inst.sigma_kev(0.0)], [1.0]))
    if pileup is not None:
        names.append("pileup")
        kinds.append("pileup")
        rows.append(np.asarray(pileup, dtype=np.float64))
    lo, hi = fit_range
    if np.ndim(continuum) == 0:
        basis = bspline_basis(energies, lo, hi, int(continuum))
    else:
        basis = bspline_basis(energies, lo, hi, max(pieces - 2, 1)) * np.asarray(continuum)
        basis = basis[basis.sum(axis=1) > 0]
    for i, row in enumerate(basis):
        names.append(f"continuum-{i}")
        kinds.append("continuum")
        rows.append(row / max(row.sum(), 1e-300))
    return SpectrumModel(names, kinds, np.array(rows), energies, inst)
