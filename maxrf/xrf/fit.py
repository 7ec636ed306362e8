"""Fitting the spectrum model to one spectrum: element significance (which elements are there)
and the refinement of the instrument's non-linear parameters (resolution, scatter angle, Compton
shape and, for calibration, the energy axis) by variable projection."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from maxrf.xrf.lines import (
    ANODES,
    PAINTING_ELEMENTS,
    anode_lines,
    compton_energy,
    line_components,
    monochromatic,
    tube_series,
)
from maxrf.xrf.model import FAMILIES, Instrument, SpectrumModel, build_model, pileup_shape
from maxrf.xrf.solver import fit_nonlinear, nnls_gram, nnls_weighted, poisson_weights

CANDIDATES = PAINTING_ELEMENTS  # proposals choose among these (anode excluded)
# A weak line family stands only beside its element's main one (Lβ/Lγ lines alone only mimic
# neighbours: Cd Lβ1 on K Kα), and its share stays near physics. (Kβ/Kα as a free ratio was
# measured and left out: in the V-Cr-Mn chain each Kβ lies on the next Kα, and freeing it lost
# Cr on XRFSpectrum.mca and moved As under Pb Lα from 1.17 to 1.34 on the layered demo.)
# (An element's M lines likewise stand only beside its L3 lines where those are in range: on a
# real M6 spectrum a free Pb M family bought the misfit at 2-3 keV, and Pb then took the As Kα
# peak.)
MAIN_FAMILY = {"L1": "L3", "L2": "L3", "KB": "K", "M": "L3"}
SIGNIFICANCE = 6.0  # an element is kept when its amplitude is this many standard errors
MIN_COUNTS_PER_PIXEL = 0.5  # and, found in a sum of pixels, this many counts per pixel


def smoothed(model: SpectrumModel, sigma: float) -> SpectrumModel:
    """The model as seen through the cube's Gaussian smoothing of ``sigma`` channels (for
    spectra that were smoothed, e.g. ``maxrf_sumspectrum``)."""
    if sigma > 0:
        from scipy.ndimage import gaussian_filter1d

        model.templates = gaussian_filter1d(model.templates, sigma, axis=1, mode="reflect",
                                            truncate=4.0)
    return model


def default_fit_range(energies: np.ndarray, inst: Instrument) -> tuple[float, float]:
    """From 1 keV to just above the highest Rayleigh line, or further, up to twice that line and
    half the tube voltage (a W tube's L lines end at 11 keV, its continuum excites far above);
    never past the axis end or the voltage."""
    lines = anode_lines(inst.anode, inst.tube_kv)
    name = str(inst.anode).strip().capitalize()
    if not lines or (name in ANODES and tube_series(name, inst.tube_kv) != tube_series(name)):
        # a voltage below the tube's main lines: its continuum excites up to the voltage
        return 1.0, float(min(energies[-1], 0.95 * inst.tube_kv))
    top = max(e for e, _w in lines.values())
    hi = max(top * 1.08 + 0.5, min(0.5 * inst.tube_kv, 2 * top))
    return 1.0, float(min(energies[-1], hi, inst.tube_kv))


def scatter_zone(inst: Instrument) -> tuple[float, float]:
    """Energies (keV) of the anode's scattered lines: from the Compton peak of its lowest main
    line at 180° to three resolution widths above its highest Rayleigh line."""
    e = [v[0] for v in anode_lines(inst.anode, inst.tube_kv).values()]
    if not e:  # no tube line excited: nothing scattered to stay clear of
        return (float("inf"), float("inf"))
    lo = float(compton_energy(min(e), 180.0))
    return lo - 3 * float(inst.fwhm_kev(lo)), max(e) + 3 * float(inst.fwhm_kev(max(e)))


def usable_elements(
    elements, energies: np.ndarray, inst: Instrument, fit_range: tuple[float, float]
) -> list[str]:
    """Elements with a line carrying ≥ 5 % of their intensity inside ``fit_range``."""
    lo, hi = fit_range
    anode = str(inst.anode).strip().capitalize()
    out = []
    for el in elements:
        if el == anode:
            continue
        lines_ = line_components(el, inst.anode, inst.tube_kv)
        total = sum(x.intensity for x in lines_)
        inside = sum(x.intensity for x in lines_ if lo + 0.05 <= x.energy_kev <= hi - 0.05)
        if total > 0 and inside >= 0.05 * total:
            out.append(el)
    return out


# How far a line family's share may move from its cross-section value when proposing elements
# (one standard deviation, relative): absorption in the paint changes Lβ/Lα (L2, L1 vs L3) by
# tens of per cent, M vs L by far more (left free). Without it a dominant Pb L3 family took the
# whole 10.5 keV peak from As Kα on PyMca's XRFSpectrum.mca.
FAMILY_RATIO_SIGMA = {"L1": 0.35, "L2": 0.35, "KB": 0.1}
# The bounds of a weak family's ratio to its main one, × the cross-section ratio, that a fit on
# the mean spectrum may reach (beyond them a misfit elsewhere is buying the ratio). Absorption
# takes more of an Lα (L3) than of the Lβ lines above it, so Lβ/Lα rarely falls far below the
# cross-section ratio: at 0.4× a free Pb L3 took As Kα on XRFSpectrum.mca (As 0.55, Pb 1.80 of
# PyMca's counts; 0.7×: see docs/performance.md).
RATIO_BOUNDS = {"L1": (0.7, 2.5), "L2": (0.7, 2.5), "KB": (0.8, 1.25)}
L_OF_K_MAX = 2.0  # an element's L families at most this × their cross-section ratio to its K
M_OF_L_MAX = 1.5  # and its M lines at most this × theirs to its L3


def family_priors(names: list[str], inst: Instrument, e_max: float
                  ) -> list[tuple[int, int, float, float]]:
    """``(family row, main family row, nominal ratio, relative sigma)`` of the families whose
    share is held near its cross-section value (rows named ``El-Fam``)."""
    from maxrf.xrf.model import nominal_family_shares

    index = {n: i for i, n in enumerate(names)}
    out = []
    for el in dict.fromkeys(n.split("-")[0] for n in names if "-" in n):
        shares = nominal_family_shares(el, inst, e_max, merge_m=True)
        for fam, rel in FAMILY_RATIO_SIGMA.items():
            main = MAIN_FAMILY[fam]
            if (f"{el}-{fam}" in index and f"{el}-{main}" in index and shares.get(fam)
                    and shares.get(main)):
                out.append((index[f"{el}-{fam}"], index[f"{el}-{main}"],
                            shares[fam] / shares[main], rel))
    return out


def _with_priors(templates, y, weights, a, priors):
    """The system with one pseudo-observation per prior: (x_f − r·x_main) = 0 ± rel·r·x_main,
    its scale taken from the amplitudes ``a`` of a first fit. Where the model misfits the data
    (reduced χ² above 1) the data's weights overstate what they know, so the priors are
    weighted up by the same factor: a misfit must not buy a ratio far from physics."""
    dof = max(y.size - int(np.count_nonzero(a)), 1)
    misfit = max(float(np.sum((y - a @ templates) ** 2 * weights)) / dof, 1.0)
    extra_t = np.zeros((templates.shape[0], len(priors)))
    extra_w = np.empty(len(priors))
    for p, (i, j, ratio, rel) in enumerate(priors):
        extra_t[i, p], extra_t[j, p] = 1.0, -ratio
        scale = max(rel * ratio * max(a[j], a[i] / max(ratio, 1e-9), 1.0), 1e-9)
        extra_w[p] = misfit / scale**2
    return (np.hstack([templates, extra_t]), np.r_[y, np.zeros(len(priors))],
            np.r_[weights, extra_w])


def significance(templates: np.ndarray, y: np.ndarray, weights: np.ndarray,
                 priors: list[tuple[int, int, float, float]] | None = None,
                 gram: tuple[np.ndarray, np.ndarray] | None = None):
    """NNLS amplitudes and each one's significance: amplitude / standard error, the error from
    the active components' covariance, scaled by the reduced χ² where the component has its
    lines when that is above 1 (a misfit of, say, the Compton peak must not read as an element
    whose lines lie under it). ``priors`` hold line families near their cross-section ratios
    (:func:`family_priors`). ``gram``: T W Tᵀ and T W y of these templates, given when many
    subsets of one set are solved (the proposal's pruning): the same solution, far faster."""
    if gram is None:
        gram = ((templates * weights) @ templates.T, (templates * weights) @ y)
    g, rhs = gram
    a = nnls_gram(g, rhs)
    if a is None:
        a = nnls_weighted(templates, y, weights)
    if priors:
        _t, _y, w_all = _with_priors(templates, y, weights, a, priors)
        extra = _t[:, templates.shape[1]:]  # the priors' pseudo-observations (y = 0 there)
        g = g + (extra * w_all[templates.shape[1]:]) @ extra.T
        a2 = nnls_gram(g, rhs)
        a = a2 if a2 is not None else nnls_weighted(_t, _y, w_all)
    resid2 = (y - a @ templates) ** 2 * weights
    chi2 = float(np.sum(resid2))
    active = np.flatnonzero(a > 0)
    z = np.zeros_like(a)
    overall = chi2 / max(y.size - active.size, 1)
    if active.size:
        from scipy.ndimage import uniform_filter1d  # here: 0.25 s of every import of this module

        cov = np.linalg.pinv(g[np.ix_(active, active)])
        for k, i in enumerate(active):
            row = templates[i]
            # the misfit where this component has its lines, each channel counted as much as
            # it tells of this amplitude (t²w: the sandwich estimator's diagonal), the misfit
            # first spread over ±1 FWHM of the component's peak (a component that patches a
            # misfit leaves it in its flanks). A V Kα alone at 4.95 keV is thus not judged by
            # the misfit of the Cr Kα its Kβ lies on (Steel.spe); the whole spectrum's misfit
            # counts only as its square root: a bad Ca K or Compton peak (reduced χ² 90 on a
            # real M6 scan) must not hide every trace element.
            where = row > 1e-3 * row.max()
            fwhm = max(int(np.count_nonzero(row > 0.5 * row.max())), 1)
            spread = uniform_filter1d(resid2, 2 * fwhm + 1, mode="nearest")
            info = row[where] ** 2 * weights[where]
            local = (float(np.sum(info * spread[where]) / np.sum(info))
                     if where.any() and np.sum(info) > 0 else 0.0)
            z[i] = a[i] / np.sqrt(max(cov[k, k], 1e-300) * max(local, np.sqrt(overall), 1.0))
    return a, z, chi2


@dataclass
class Proposal:
    elements: list[str]
    significance: dict[str, float] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)  # in the spectrum it was found in
    source: dict[str, str] = field(default_factory=dict)


# An element carrying this share of the element counts is the matrix: its own absorption moves
# its Kβ/Kα (Ca in chalk: the real M6 spectrum's Ca Kβ region was under-fitted by 13 % with the
# cross-section ratio), so its Kβ is a family of its own, held near physics (FAMILY_RATIO_SIGMA).
# Freeing every element's Kβ lost Cr and As on XRFSpectrum.mca (a thin standard).
MATRIX_SHARE = 0.2


def matrix_elements(proposal: Proposal, share: float = MATRIX_SHARE) -> tuple[str, ...]:
    """Elements found in the mean spectrum holding ≥ ``share`` of its element counts."""
    counts = {el: c for el, c in proposal.counts.items()
              if proposal.source.get(el) == "mean spectrum" and el in proposal.elements}
    total = sum(counts.values())
    return tuple(sorted(el for el, c in counts.items() if total > 0 and c >= share * total))


def _prune(t: np.ndarray, y: np.ndarray, w: np.ndarray, keep: list[int], background: list[int],
           need: np.ndarray, floor: float, names: list[str], inst: Instrument | None = None,
           e_max: float = 0.0):
    """Drop element families (rows ``keep`` of ``t``; the ``background`` rows stay) until every
    one left stands: significance ≥ ``need``, amplitude ≥ ``floor``, and a weak family (L1, L2)
    only beside its element's main one (L3): an element's Lα lines are always its strongest L
    lines, so the others alone only mimic neighbours and would hold lines that no proposed
    element explains."""
    g_all, rhs_all = (t * w) @ t.T, (t * w) @ y  # once: each pass solves a subset of it
    named = set(names)
    for _ in range(len(keep) + 1):
        rows = keep + background
        priors = (family_priors([names[k] if k < len(names) else "" for k in rows], inst, e_max)
                  if inst is not None else None)
        a, z, _chi2 = significance(t[rows], y, w, priors,
                                   gram=(g_all[np.ix_(rows, rows)], rhs_all[rows]))
        za, aa = z[: len(keep)], a[: len(keep)]
        ok = (za >= need[keep]) & (aa >= floor)
        standing = {names[k] for k, good in zip(keep, ok, strict=True) if good}
        for i, k in enumerate(keep):
            el, fam = names[k].split("-")
            main = f"{el}-{MAIN_FAMILY.get(fam)}"
            if ok[i] and fam in MAIN_FAMILY and main in named and main not in standing:
                ok[i] = False
        if ok.all():
            break
        # inactive ones go at once; then the weakest active one, whose overlapping partners
        # may then stand
        bad = np.flatnonzero(~ok & (aa > 0))
        drop = set(np.flatnonzero((aa <= 0) | (za < need[keep] / 4)).tolist())
        if bad.size and not drop:
            drop.add(int(bad[np.argmin(za[bad])]))
        keep = [k for i, k in enumerate(keep) if i not in drop]
    return keep, a, za, aa, ok


def propose(
    spectra: list[tuple[str, np.ndarray, float]],
    energies: np.ndarray,
    inst: Instrument,
    fit_range: tuple[float, float],
    candidates=CANDIDATES,
    threshold: float = SIGNIFICANCE,
    min_counts: float = 20.0,
    smoothing_sigma: float = 0.0,
    min_per_pixel: float = 0.0,
    pileup: bool = False,
) -> Proposal:
    """Elements significantly present in any of ``spectra`` ((label, counts, pixels)): all
    candidates are fitted at once, then the insignificant ones dropped until all stand. A family
    also needs ``min_counts`` counts and ``min_per_pixel`` counts per pixel of the spectrum (a
    sum of millions of pixels shows a 0.1 % misfit of a strong line as a "significant" trace).
    With ``pileup`` each spectrum's own pile-up (its self-convolution) is a background
    component: a Ca Kα + Ca Kα sum peak must not read as nickel."""
    cands = usable_elements(candidates, energies, inst, fit_range)
    lo, hi = fit_range
    sl = (energies >= lo) & (energies <= hi)
    # one component per line family: self-absorption changes their ratios per object
    full = smoothed(build_model(energies, cands, inst, fit_range, continuum=12, sensor=False,
                                split_families=True, merge_m=True), smoothing_sigma)
    n_el = len(full.element_rows)
    fam_names = full.names[:n_el]
    # A family whose strongest line lies among the anode's scattered lines (Rayleigh and Compton,
    # whose shapes are the least certain part of the model) must stand out 3x more.
    zone = scatter_zone(inst)
    need = np.array([
        threshold * (3.0 if zone[0] <= energies[int(np.argmax(full.templates[i]))] <= zone[1]
                     else 1.0)
        for i in range(n_el)
    ])
    found = Proposal([])
    background = list(range(n_el, len(full.names)))
    for label, y_full, pixels in spectra:
        y_full = np.asarray(y_full, dtype=np.float64)
        y = y_full[sl]
        t_all, bg = full.templates[:, sl], background
        shape = pileup_shape(energies, y_full) if pileup else None
        if shape is not None:
            t_all = np.vstack([t_all, shape[sl]])
            bg = background + [t_all.shape[0] - 1]
        floor = max(min_counts, min_per_pixel * pixels)
        keep, a, za, aa, ok = _prune(t_all, y, poisson_weights(y), list(range(n_el)),
                                     bg, need, floor, fam_names, inst, hi)
        for i, k in enumerate(keep):
            if not ok[i]:
                continue
            el = fam_names[k].split("-")[0]
            if el not in found.significance:
                found.elements.append(el)
                found.counts[el], found.source[el] = 0.0, label
            if found.source[el] == label:
                found.significance[el] = max(found.significance.get(el, 0.0), float(za[i]))
                found.counts[el] += float(aa[i] / max(pixels, 1))
    order = {el: i for i, el in enumerate(cands)}
    found.elements.sort(key=lambda el: order[el])
    return found


@dataclass
class SpectrumFit:
    """A refined fit of one (mean) spectrum."""

    instrument: Instrument
    axis: tuple[float, float, float]  # offset, gain, quadratic (keV)
    model: SpectrumModel
    amplitudes: np.ndarray
    chi2_reduced: float
    fit_range: tuple[float, float]

    def amplitude(self, name: str) -> float:
        return float(self.amplitudes[self.model.names.index(name)])

    def fitted(self) -> np.ndarray:
        return self.amplitudes @ self.model.templates


NONLINEAR = ("noise_fwhm_kev", "fano", "angle_deg", "doppler", "tail_kev", "shoulder_shift",
             "shoulder_width")
PEAK_SHAPE = ("line_tail", "line_tail_kev", "line_shelf")  # fitted where counts allow
BOUNDS = {
    "line_tail": (0.0, 0.3),
    "line_tail_kev": (0.03, 1.0),
    "line_shelf": (0.0, 0.05),
    "noise_fwhm_kev": (0.02, 0.3),
    "fano": (0.05, 0.3),
    "angle_deg": (30.0, 179.0),
    "doppler": (0.001, 0.05),
    "tail_kev": (0.05, 2.0),
    "shoulder_shift": (0.0, 4.0),
    "shoulder_width": (1.2, 4.0),
}


def refine(
    y: np.ndarray,
    axis: tuple[float, float, float],
    elements: list[str],
    inst: Instrument,
    fit_range: tuple[float, float] | None = None,
    fit_axis: bool = False,
    quadratic: bool = False,
    split_families: bool = True,
    max_nfev: int = 40,
    smoothing_sigma: float = 0.0,
    peak_shape: bool = False,
    pileup: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    free_beam: bool = False,
) -> SpectrumFit:
    """Fit the model to the counts ``y`` over ``fit_range``, freeing the instrument's
    resolution and scatter parameters (and the axis ``offset + gain·ch + quad·ch²`` with
    ``fit_axis``; the quadratic term only with ``quadratic``; the lines' low-energy tail and
    shelf with ``peak_shape``). ``weights`` (per channel of ``y``): instead of the Poisson ones,
    e.g. :func:`misfit_weights`. ``free_beam``: a monochromatic beam's energy (an anode given in
    keV) is free within ±3 % too: a user's "17.5" may be 60 eV off the beam's own energy."""
    y = np.asarray(y, dtype=np.float64)
    ch = np.arange(y.size, dtype=np.float64)
    off0, gain0, quad0 = axis
    energies0 = off0 + gain0 * ch + quad0 * ch**2
    fit_range = fit_range or default_fit_range(energies0, inst)
    lo, hi = fit_range
    has_sensor = energies0[0] < -0.1 and lo <= 0.0
    sl = (energies0 >= lo) & (energies0 <= hi)
    free = NONLINEAR + (PEAK_SHAPE if peak_shape else ())
    names = list(free)
    p0 = [getattr(inst, n) for n in free]
    if peak_shape:  # start inside, not at the bound (a zero tail has no gradient of its slope)
        p0[len(NONLINEAR):] = [max(inst.line_tail, 0.02), inst.line_tail_kev,
                               max(inst.line_shelf, 0.002)]
    lower = [BOUNDS[n][0] for n in free]
    upper = [BOUNDS[n][1] for n in free]
    scale = [0.01, 0.02, 5.0, 0.005, 0.1, 0.2, 0.2] + ([0.02, 0.05, 0.002] if peak_shape else [])
    beam = monochromatic(inst.anode) if free_beam else None
    if beam is not None:
        names.append("beam")
        p0 += [beam]
        lower += [beam * 0.97]
        upper += [beam * 1.03]
        scale += [0.01]
    if fit_axis:
        p0 += [off0, gain0] + ([quad0] if quadratic else [])
        lower += [off0 - 0.05, gain0 * 0.99] + ([-1e-6] if quadratic else [])
        upper += [off0 + 0.05, gain0 * 1.01] + ([1e-6] if quadratic else [])
        scale += [1e-3, 1e-6] + ([1e-9] if quadratic else [])
        names += ["offset", "gain"] + (["quad"] if quadratic else [])
    p0 = np.clip(p0, lower, upper)

    def unpack(p):
        kw = dict(zip(names, p, strict=True))
        i = inst.with_(**{n: float(kw[n]) for n in free})
        if "beam" in kw:
            i = i.with_(anode=f"{float(kw['beam']):.5f}")
        ax = (kw.get("offset", off0), kw.get("gain", gain0), kw.get("quad", quad0))
        return i, ax

    def model_of(p) -> SpectrumModel:
        i, ax = unpack(p)
        e = ax[0] + ax[1] * ch + ax[2] * ch**2
        return smoothed(build_model(e, elements, i, fit_range, continuum=12, sensor=has_sensor,
                                    split_families=split_families, pileup=pileup),
                        smoothing_sigma)

    def templates(p):
        return model_of(p).templates[:, sl]

    w = poisson_weights(y[sl]) if weights is None else np.asarray(weights, np.float64)[sl]
    p, _a, chi2 = fit_nonlinear(y[sl], templates, p0, (np.array(lower), np.array(upper)), w,
                                np.array(scale), max_nfev=max_nfev)
    i, ax = unpack(p)
    model = model_of(p)
    a = nnls_weighted(model.templates[:, sl], y[sl], w)
    dof = max(int(sl.sum()) - int((a > 0).sum()) - len(names), 1)
    return SpectrumFit(i, tuple(float(v) for v in ax), model, a, chi2 / dof, fit_range)


def misfit_weights(y: np.ndarray, fit: SpectrumFit, width_kev: float = 0.5) -> np.ndarray:
    """Poisson weights divided, window by window (``width_kev``), by the fit's reduced χ² there
    when above 1: where the model is least sure (a real detector's zero peak, 400 million
    counts of it in XRFSpectrum.mca; a monochromatic beam's Compton peak) it must not outweigh
    every fluorescence line in placing the axis."""
    y = np.asarray(y, dtype=np.float64)
    w = poisson_weights(y)
    e = fit.model.energies
    r2 = (y - fit.fitted()) ** 2 * w
    edges = np.arange(fit.fit_range[0], fit.fit_range[1] + width_kev, width_kev)
    which = np.digitize(e, edges)
    sums = np.bincount(which, weights=r2, minlength=edges.size + 1)
    n = np.bincount(which, minlength=edges.size + 1)
    local = np.maximum(sums / np.maximum(n, 1), 1.0)
    return w / local[which]


def family_shares(fit: SpectrumFit, min_counts: float) -> dict[str, dict[str, float]]:
    """Per element, each line family's share of its counts as fitted (``{"Pb": {"L3": .5,
    "L2": .3, "L1": .1, "M5": .06, ...}}``); elements whose families are too weak to tell keep
    the model's prior."""
    out: dict[str, dict[str, float]] = {}
    per: dict[str, dict[str, float]] = {}
    for name, kind, a in zip(fit.model.names, fit.model.kinds, fit.amplitudes, strict=True):
        if kind == "element" and "-" in name and name.split("-")[1] in FAMILIES:
            el, fam = name.split("-")
            per.setdefault(el, {})[fam] = float(a)
    for el, fams in per.items():
        total = sum(fams.values())
        if len(fams) > 1 and total >= min_counts:
            out[el] = _bounded_ratios(el, {f: v / total for f, v in fams.items()}, fit)
    return out


def _bounded_ratios(element: str, shares: dict[str, float], fit: SpectrumFit
                    ) -> dict[str, float]:
    """Shares with each weak family's ratio to its main one held within ``RATIO_BOUNDS`` of the
    cross-section ratio (renormalised)."""
    from maxrf.xrf.model import nominal_family_shares

    nominal = nominal_family_shares(element, fit.instrument, fit.fit_range[1])
    out = dict(shares)
    for fam, (lo, hi) in RATIO_BOUNDS.items():
        main = MAIN_FAMILY[fam]
        if fam in out and out.get(main, 0) > 0 and nominal.get(fam) and nominal.get(main):
            r0 = nominal[fam] / nominal[main]
            out[fam] = out[main] * float(np.clip(out[fam] / out[main], lo * r0, hi * r0))
    m = [f for f in out if f.startswith("M")]
    m_nominal = sum(nominal.get(f, 0.0) for f in m)
    if m and out.get("L3", 0) > 0 and nominal.get("L3") and m_nominal > 0:
        # absorption takes far more of the M lines (2-3 keV) than of the L lines, so M/L only
        # falls below the cross-section ratio; each M subshell keeps its cross-section share
        m_total = min(sum(out[f] for f in m), M_OF_L_MAX * m_nominal / nominal["L3"] * out["L3"])
        for f in m:
            out[f] = m_total * nominal.get(f, 0.0) / m_nominal
    if out.get("K", 0) > 0 and nominal.get("K"):  # a K element's L lines sit at the fitted
        # range's low end, where a zero peak's or an absorption misfit would buy them (Co L1
        # took half of Co's counts on XRFSpectrum.mca): at most twice their cross-section share
        for fam in [f for f in out if f.startswith("L")]:
            cap = L_OF_K_MAX * nominal.get(fam, 0.0) / nominal["K"]
            out[fam] = min(out[fam], out["K"] * cap)
    total = sum(out.values())
    return {f: v / total for f, v in out.items()} if total > 0 else out


def tube_shares(fit: SpectrumFit) -> dict[str, float] | None:
    """Each subshell's share of the tube's scattered lines (Rayleigh and Compton together) as
    fitted with ``split_families`` (``{"L1": .1, "L2": .3, "L3": .6}`` for W), or None when the
    tube has one family."""
    per: dict[str, float] = {}
    for name, kind, a in zip(fit.model.names, fit.model.kinds, fit.amplitudes, strict=True):
        fam = name.rsplit("-", 1)[-1]
        if kind == "scatter" and fam in FAMILIES:
            per[fam] = per.get(fam, 0.0) + float(a)
    total = sum(per.values())
    return {f: v / total for f, v in per.items()} if len(per) > 1 and total > 0 else None
