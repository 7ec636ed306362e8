"""Element maps: a non-negative fit of every pixel's raw counts with the spectrum model.

1. ``prepare``: the elements (proposed from the mean spectrum and the raw spectra around the
   hotmax pixels, or given), the instrument refined on the mean spectrum (resolution, scatter
   angle, Compton peak, shoulder and tail, the tube's subshell shares, each element's line-family
   shares: K, L1-L3, M1-M5), and the per-pixel templates: one per element (all its lines and
   escapes), Rayleigh, Compton (peak, shoulder, tail) and the mean continuum cut into broad
   pieces; weights from the mean model's Poisson variance, floored at its median channel.
2. ``fit_maps``: strips of raw counts → normal equations (one float32 matmul) → compiled NNLS on
   both cores; bounded memory, optionally on a dask.distributed cluster.
3. Detection limit: an element's value is kept where it is detected at ``DETECTION_SIGMA``
   standard deviations in the pixel or in its 3 × 3 neighbourhood (unconstrained estimates, whose
   variance follows from the normal equations, so this is decided before the solve), else the
   fit holds it at 0, so that its noise takes no counts from an overlapping neighbour. Non-negative
   fits of pure noise are positive half the time, so without this every absent element would
   read ≈ 0.4 σ per pixel (e.g. arsenic under lead and mercury, whose lines both overlap it:
   +24 % of its total on the demo scan, 2.4 % cross-talk; with it 0.2 %).
Each element map holds fitted counts per pixel of all the element's lines (escape peaks included).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maxrf.datastack import DataStack
from maxrf.datastack.blockread import BlockReader
from maxrf.errors import MaxrfError
from maxrf.pipeline.blocks import pixel_blocks, progress_bar, spectra_ahead
from maxrf.pipeline.table import default, step
from maxrf.xrf.defaults import DEFAULT_TUBE_KV
from maxrf.xrf.fit import (
    CANDIDATES,
    MIN_COUNTS_PER_PIXEL,
    Proposal,
    default_fit_range,
    family_shares,
    matrix_elements,
    propose,
    refine,
    tube_shares,
    usable_elements,
)
from maxrf.xrf.lines import atomic_number, excitation_spectrum, monochromatic
from maxrf.xrf.model import Instrument, SpectrumModel, build_model, pileup_shape
from maxrf.xrf.solver import GramSolver, nnls_weighted, spectra_f32

LAYERS = step("element-maps").layers
PEAK_SHAPE_MIN_COUNTS = 5e7  # counts of the summed spectrum needed to fit line tails and shelf
BLOCK = (16, 256)  # rows × columns per fitted block (aligned to the 16 × 16 chunks)
AHEAD = 2  # blocks read ahead while one is fitted
CONTINUUM_PIECES = 5
DETECTION_SIGMA = 3.5  # per test (pixel, neighbourhood): two tests, and model misfits are not noise
WEIGHT_FLOOR_PERCENTILE = 50  # weights stop growing below the mean pixel's median channel


class ElementMapError(MaxrfError):
    """Element maps cannot be made with these inputs."""


@dataclass
class MapModel:
    """Everything the per-pixel fit needs (small; picklable for distributed workers)."""

    elements: list[str]
    model: SpectrumModel
    channels: np.ndarray  # bool mask of the fitted channels
    weights: np.ndarray  # per fitted channel
    fit_range: tuple[float, float]
    proposal: Proposal | None
    shares: dict[str, dict[str, float]] = field(default_factory=dict)
    mean_chi2: float = float("nan")
    tube_shares: dict[str, float] | None = None
    regions: list[dict] = field(default_factory=list)  # the mean fit's misfit by energy
    warnings: list[str] = field(default_factory=list)

    def attrs(self) -> dict:
        return {
            "elements": self.elements,
            "components": self.model.names,
            "fit_range_kev": list(self.fit_range),
            "instrument": self.model.instrument.attrs(),
            "family_shares": self.shares,
            "tube_subshell_shares": self.tube_shares,
            "mean_spectrum_reduced_chi2": self.mean_chi2,
            "mean_spectrum_residual_by_energy": self.regions,
            "warnings": self.warnings,
            "proposed": None if self.proposal is None else {
                el: {"significance": round(self.proposal.significance[el], 1),
                     "counts_per_pixel": round(self.proposal.counts[el], 3),
                     "found_in": self.proposal.source[el]}
                for el in self.proposal.elements
            },
            "units": "counts per pixel (all lines of the element, escape peaks included)",
            "detection": {"sigma": DETECTION_SIGMA, "where": "pixel or its 3x3 neighbourhood",
                          "below": 0.0},
        }


def parse_elements(text: str | list[str] | None) -> list[str] | None:
    """``"Pb,Hg, As"`` → ``["Pb", "Hg", "As"]``; unknown symbols raise a one-line error."""
    if text is None:
        return None
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        sym = str(item).strip().capitalize()
        if not sym:
            continue
        try:
            atomic_number(sym)
        except ValueError:
            raise ElementMapError(f"unknown element symbol {item!r}") from None
        if sym not in out:
            out.append(sym)
    return out


def anode_conflict(elements: list[str] | None, anode: str | float) -> str | None:
    """Why the tube's own anode cannot be mapped (its lines are the scattered tube radiation the
    model fits as Rayleigh/Compton), or None when ``elements`` does not include it."""
    name = str(anode).strip().capitalize()
    if name in (elements or []):
        return (f"{name} is the tube's anode: its lines are modelled as scattered tube radiation "
                f"(Rayleigh and Compton), not mapped as an element; leave {name} out")
    return None


def _instrument(ds: DataStack, anode: str | float, tube_kv: float) -> tuple[Instrument, tuple]:
    cal = ds.attrs("maxrf_energies").get("calibration", {})
    try:
        inst = Instrument(anode=str(anode), tube_kv=float(tube_kv))
        excitation_spectrum(inst.anode, inst.tube_kv)  # checks the anode and the voltage
    except ValueError as exc:
        raise ElementMapError(str(exc)) from None
    changes = {}
    beam = (cal.get("refinement") or {}).get("beam_kev")
    if beam and monochromatic(inst.anode) is not None:  # the beam energy the lines placed
        changes["anode"] = f"{float(beam):.5f}"
    if cal.get("scatter_angle_deg"):
        changes["angle_deg"] = float(cal["scatter_angle_deg"])
    for key in ("noise_fwhm_kev", "fano"):
        if cal.get(key):
            changes[key] = float(cal[key])
    energies = ds.read("maxrf_energies")
    ch = np.arange(energies.size, dtype=np.float64)
    axis = tuple(float(v) for v in np.polyfit(ch, energies, 2)[::-1])
    return inst.with_(**changes), axis


def _hot_spectra(ds: DataStack, limit: int = 24) -> list[tuple[str, np.ndarray, int]]:
    """The raw spectra around the hotmax pixels, each summed with its 3 × 3 neighbourhood: a
    hotmax pixel is chosen for its highest count in some channel, often an upward fluctuation
    that a neighbouring element's line would fit (Ag Lα beside Ar Kα); eight unselected
    neighbours dilute that while a hot spot's lines stay strong."""
    if "hotmax_spots" not in ds:
        return []
    raw = ds.array("maxrf_raw")
    h, w, _c = raw.shape
    out = []
    for r, c in ds.read("hotmax_spots")[:limit].tolist():
        r0, r1, c0, c1 = max(r - 1, 0), min(r + 2, h), max(c - 1, 0), min(c + 2, w)
        y = np.asarray(raw[r0:r1, c0:c1, :], dtype=np.float64).sum(axis=(0, 1))
        out.append((f"pixels around ({r}, {c})", y, (r1 - r0) * (c1 - c0)))
    return out


def prepare(
    datastack: str | Path,
    anode: str | float = default("anode"),
    tube_kv: float = DEFAULT_TUBE_KV,
    elements: list[str] | None = None,
    add: list[str] | None = None,
    drop: list[str] | None = None,
) -> MapModel:
    """Choose the elements (or check the given ones) and build the per-pixel model."""
    ds = DataStack.of(datastack)
    for layer in ("maxrf_energies", "maxrf_raw", "maxrf_rawmeanspectrum"):
        if layer not in ds:
            raise ElementMapError(f"no layer {layer!r}: run 'maxrf process' first", ds.path)
    inst, axis = _instrument(ds, anode, tube_kv)
    energies = ds.read("maxrf_energies")
    h, w, _c = ds.array("maxrf_raw").shape
    ysum = ds.read("maxrf_rawmeanspectrum").astype(np.float64) * (h * w)
    fit_range = default_fit_range(energies, inst)
    pile = pileup_shape(energies, ysum)
    # the peak shape's tail and shelf are fitted where the counts can tell them (a real scan's
    # mean spectrum holds 1e9 counts; a small test scan's few million cannot)
    shape = float(ysum.sum()) >= PEAK_SHAPE_MIN_COUNTS
    proposal = None
    if elements is None:
        spectra = [("mean spectrum", ysum, h * w)] + _hot_spectra(ds)
        proposal = propose(spectra, energies, inst, fit_range, CANDIDATES,
                           min_per_pixel=MIN_COUNTS_PER_PIXEL, pileup=True)
        matrix = matrix_elements(proposal)
        if (shape or matrix) and proposal.elements:  # again with the detector's tails and
            # shelf and the matrix's own Kβ/Kα: without them a line's tail and a strong Kβ
            # read as traces of their neighbours
            inst = inst.with_(kb_free=matrix)
            if shape:
                inst = refine(ysum, axis, proposal.elements, inst, fit_range,
                              split_families=True, pileup=pile, peak_shape=True,
                              max_nfev=15).instrument
            proposal = propose(spectra, energies, inst, fit_range, tuple(proposal.elements),
                               min_per_pixel=MIN_COUNTS_PER_PIXEL, pileup=True)
        chosen = list(proposal.elements)
    else:
        chosen = list(elements)
    for el in add or []:
        if el not in chosen:
            chosen.append(el)
    chosen = [el for el in chosen if el not in set(drop or [])]
    if (why := anode_conflict(chosen, inst.anode)) is not None:
        raise ElementMapError(why, ds.path)
    unusable = [el for el in chosen if not usable_elements([el], energies, inst, fit_range)]
    if unusable:
        lo, hi = fit_range
        raise ElementMapError(
            f"no line of {', '.join(unusable)} lies in the fitted range {lo:.1f}-{hi:.1f} keV"
            f" ({inst.anode} anode, {inst.tube_kv:g} kV)",
            ds.path,
        )
    if not chosen:
        raise ElementMapError("no element to map (none proposed; give --elements)", ds.path)
    fit = refine(ysum, axis, chosen, inst, fit_range, split_families=True, pileup=pile,
                 peak_shape=shape)
    shares = family_shares(fit, min_counts=200.0 * max(h * w, 1) ** 0.5)
    cont = [i for i, k in enumerate(fit.model.kinds) if k == "continuum"]
    shape = fit.amplitudes[cont] @ fit.model.templates[cont]
    if shape.sum() <= 0:
        shape = np.ones_like(energies, dtype=np.float64)
    tube = tube_shares(fit)
    model = build_model(energies, chosen, fit.instrument, fit_range, continuum=shape,
                        pieces=CONTINUUM_PIECES, ratios=shares, sensor=False, tube_shares=tube,
                        pileup=pile)
    sel = (energies >= fit_range[0]) & (energies <= fit_range[1])
    t = model.templates[:, sel]
    keep = t.sum(axis=1) > 0
    model = SpectrumModel([n for n, k in zip(model.names, keep, strict=True) if k],
                          [n for n, k in zip(model.kinds, keep, strict=True) if k],
                          model.templates[keep], model.energies, model.instrument)
    t = model.templates[:, sel]
    a = nnls_weighted(t, ysum[sel], 1.0 / np.maximum(ysum[sel], 1.0))
    expected = np.maximum(a @ t / (h * w), 0.0)
    # Poisson weights of the mean pixel, floored at its median channel: the model is least sure
    # where counts are lowest (low-energy absorption, tails), and a near-empty channel must not
    # outweigh a line's peak (arsenic under lead on the demo scan: total 0.970 → 0.985).
    positive = expected[expected > 0]
    floor = max(float(np.percentile(positive, WEIGHT_FLOOR_PERCENTILE)) if positive.size else 1.0,
                1e-3)
    weights = 1.0 / np.maximum(expected, floor)
    regions = residual_regions(energies[sel], ysum[sel], a @ t)
    return MapModel(chosen, model, sel, weights, fit_range, proposal, shares, fit.chi2_reduced,
                    tube, regions, misfit_warnings(regions))


CHI2_WARN = 3.0  # a mean-spectrum fit whose reduced χ² (overall or in a region) is above this


def residual_regions(energies: np.ndarray, counts: np.ndarray, fitted: np.ndarray,
                     width_kev: float = 1.0) -> list[dict]:
    """The summed spectrum's fit, judged by energy: per ``width_kev`` region its reduced χ²
    (Poisson) and the counts it over (−) or under (+) predicts, as a share of the region's."""
    chi = (counts - fitted) ** 2 / np.maximum(fitted, 1.0)
    out = []
    lo = np.floor(energies[0] / width_kev) * width_kev
    while lo < energies[-1]:
        m = (energies >= lo) & (energies < lo + width_kev)
        if m.sum() >= 3:
            total = float(counts[m].sum())
            out.append({"kev": [round(float(lo), 2), round(float(lo + width_kev), 2)],
                        "reduced_chi2": round(float(chi[m].mean()), 2),
                        "residual_share": round(float((counts[m] - fitted[m]).sum())
                                                / max(total, 1.0), 4)})
        lo += width_kev
    return out


def misfit_warnings(regions: list[dict]) -> list[str]:
    """One line naming where the mean spectrum is badly fitted (the worst regions first)."""
    bad = sorted((r for r in regions if r["reduced_chi2"] > CHI2_WARN),
                 key=lambda r: -r["reduced_chi2"])
    if not bad:
        return []
    where = ", ".join(f"{r['kev'][0]:g}-{r['kev'][1]:g} keV (chi2 {r['reduced_chi2']:g}, "
                      f"{'under' if r['residual_share'] > 0 else 'over'}-fitted by "
                      f"{abs(r['residual_share']):.1%})" for r in bad[:3])
    return [f"the model fits the mean spectrum poorly at {where}: maps of elements with lines "
            "there are less certain (see maxrf_elementmaps attrs "
            "'mean_spectrum_residual_by_energy')"]


@dataclass
class MapResult:
    maps: np.ndarray  # elements × height × width, float32
    residual: np.ndarray  # height × width reduced χ²
    background: np.ndarray  # height × width counts of scatter + continuum
    sigma: np.ndarray  # elements × height × width, one-sigma counts (Poisson)
    seconds: float
    spectra_per_s: float


def _read(path: str, block, layer: str = "maxrf_raw") -> np.ndarray:
    r0, r1, c0, c1 = block
    return DataStack(path).array(layer, latest=False)[r0:r1, c0:c1, :]


def _box3(a: np.ndarray) -> np.ndarray:
    """Sum over each pixel's 3 × 3 neighbourhood (first two axes; nothing outside)."""
    p = np.pad(a, ((1, 1), (1, 1)) + ((0, 0),) * (a.ndim - 2))
    r = p[:-2] + p[1:-1] + p[2:]
    return r[:, :-2] + r[:, 1:-1] + r[:, 2:]


class _Fitter:
    def __init__(self, mm: MapModel, detection_sigma: float = DETECTION_SIGMA) -> None:
        t = mm.model.templates[:, mm.channels]
        self.solver = GramSolver(t, mm.weights)
        self.sel = np.flatnonzero(mm.channels)
        self.lo, self.hi = int(self.sel[0]), int(self.sel[-1]) + 1
        self.w64 = np.ascontiguousarray(mm.weights, dtype=np.float64)
        self.el = np.array(mm.model.element_rows)
        self.bg = np.array([i for i in range(len(mm.model.names)) if i not in set(self.el)])
        self.dof = max(self.sel.size - len(mm.model.names), 1)
        self.mean_total = float(np.sum(1.0 / mm.weights))  # ≈ counts of a mean pixel
        # Unconstrained element amplitudes are B·G⁻¹; for a pixel s times as bright as the mean
        # one (whose variance the weights are) their variance is s·diag(G⁻¹).
        ginv = np.linalg.pinv(self.solver.gram)
        self.ginv_el = np.ascontiguousarray(ginv[:, self.el])
        self.sd = np.sqrt(np.maximum(np.diag(ginv)[self.el], 0.0))  # of the mean pixel
        self.limit = detection_sigma * self.sd
        self.buffer: np.ndarray | None = None  # float32 spectra, reused block after block

    def detected(self, b: np.ndarray, s: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """pixels × elements: detected in the pixel or in its 3 × 3 neighbourhood."""
        xu = b @ self.ginv_el
        xn = _box3(xu.reshape(*shape, -1)).reshape(xu.shape)
        sn = _box3(s.reshape(shape)).reshape(-1)
        return (xu > np.sqrt(s)[:, None] * self.limit) | (xn > np.sqrt(sn)[:, None] * self.limit)

    def fit(self, raw: np.ndarray, order: np.ndarray | None = None,
            shape: tuple[int, int] | None = None):
        """Fit a block: ``raw`` (rows, cols, channels), or spectra (n, channels) in any order
        with ``order`` (each raster pixel's row) and the block's ``shape``."""
        if order is None:
            shape = raw.shape[:2]
        spectra = raw.reshape(-1, raw.shape[-1])
        n = spectra.shape[0] * (self.hi - self.lo)
        if self.buffer is None or self.buffer.size < n:
            self.buffer = np.empty(n, np.float32)
        y, yy, total = spectra_f32(spectra, self.lo, self.hi, self.w64, self.buffer)
        b = self.solver.project(y)
        if order is not None:  # the few numbers per pixel, not the spectra, into raster order
            b, yy, total = b[order], yy[order], total[order]
        total = np.maximum(total, 1.0)
        # detection needs only B; undetected elements are held at 0 in the fit itself, so that
        # their noise takes no counts from an overlapping neighbour (Ag Lα on Ar Kα)
        free = np.ones((b.shape[0], len(self.solver.gram)), np.bool_)
        free[:, self.el] = self.detected(b, total / self.mean_total, shape)
        x = self.solver.solve(b, free)
        chi2 = self.solver.weighted_chi2(yy, b, x)
        # the weights are the mean pixel's variance: rescale to this pixel's brightness
        red = chi2 / self.dof * np.minimum(self.mean_total / total, 1e3)
        maps = x[:, self.el].T.reshape(len(self.el), *shape)
        bg = x[:, self.bg].sum(axis=1).reshape(shape)
        # one sigma of each element's counts: the mean pixel's, scaled by this pixel's counts
        sigma = (self.sd[:, None] * np.sqrt(total / self.mean_total)[None, :]).reshape(maps.shape)
        return (maps.astype(np.float32), red.reshape(shape).astype(np.float32),
                bg.astype(np.float32), sigma.astype(np.float32))


def _fit_block(path: str, block, mm: MapModel, layer: str = "maxrf_raw"):
    """One block on a distributed worker (reads its raw counts itself)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        return block, _Fitter(mm).fit(_read(path, block, layer))


def fit_maps(
    datastack: str | Path,
    mm: MapModel,
    scheduler: Any = None,
    progress: bool | None = None,
) -> MapResult:
    """Fit every pixel; ``scheduler`` is a dask.distributed address or Client (else local)."""
    ds = DataStack.of(datastack)
    path = str(ds.path)
    h, w, _c = ds.array("maxrf_raw").shape
    n_el = len(mm.model.element_rows)
    maps = np.zeros((n_el, h, w), np.float32)
    residual = np.zeros((h, w), np.float32)
    background = np.zeros((h, w), np.float32)
    sigma = np.zeros((n_el, h, w), np.float32)
    blocks = pixel_blocks(h, w, *BLOCK)
    started = time.time()
    bar = progress_bar(h * w, progress, f"element maps {ds.path.name}")

    def put(block, out) -> None:
        r0, r1, c0, c1 = block
        (maps[:, r0:r1, c0:c1], residual[r0:r1, c0:c1], background[r0:r1, c0:c1],
         sigma[:, r0:r1, c0:c1]) = out
        if bar is not None:
            bar.update((r1 - r0) * (c1 - c0))

    try:
        if scheduler is None:
            from threadpoolctl import threadpool_limits

            fitter = _Fitter(mm)
            reader = BlockReader(ds, "maxrf_raw")
            # one BLAS thread: the projection gains nothing from two, and OpenBLAS's idle
            # threads spin for a while after each call, taking the cores from the compiled
            # solver and the decompression (36 k -> 67 k spectra/s serially at 512²)
            with threadpool_limits(1, user_api="blas"):
                for block, spectra, order in spectra_ahead(reader, blocks, AHEAD):
                    put(block, fitter.fit(spectra, order, (block[1] - block[0],
                                                           block[3] - block[2])))
        else:
            from distributed import Client, as_completed

            client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
            try:
                mm_f = client.scatter(mm, broadcast=True)
                raw_layer = ds.latest("maxrf_raw")  # the version this step reads
                futures = [client.submit(_fit_block, path, b, mm_f, raw_layer, pure=False)
                           for b in blocks]
                for fut in as_completed(futures):
                    block, out = fut.result()
                    put(block, out)
                    fut.release()
            finally:
                if client is not scheduler:
                    client.close()
    finally:
        if bar is not None:
            bar.close()
    for r, c in ds.attrs("maxrf_cube").get("maxrf", {}).get("bad_pixels", []):
        maps[:, r, c], residual[r, c], background[r, c] = 0.0, np.nan, 0.0  # glitch pixels
        sigma[:, r, c] = np.nan
    seconds = time.time() - started
    return MapResult(maps, residual, background, sigma, seconds, h * w / max(seconds, 1e-9))


def roi_maps(datastack: str | Path, elements: list[str], width_fwhm: float = 1.0) -> np.ndarray:
    """Background-corrected region-of-interest sums around each element's strongest line (the
    classic way, for comparison): counts in ±FWHM minus a linear background from side windows."""
    from maxrf.xrf.model import element_family_lines

    ds = DataStack.of(datastack)
    energies = ds.read("maxrf_energies")
    raw = ds.array("maxrf_raw")
    inst = Instrument()
    h, w, _c = raw.shape
    windows = []
    for el in elements:
        lines_ = [x for fam in element_family_lines(el, inst, energies[-1]).values() for x in fam]
        e0 = max(lines_, key=lambda x: x.intensity).energy_kev
        f = float(inst.fwhm_kev(e0)) * width_fwhm
        idx = lambda a, b: np.flatnonzero((energies >= a) & (energies < b))  # noqa: E731
        windows.append((idx(e0 - f, e0 + f), idx(e0 - 2 * f, e0 - f), idx(e0 + f, e0 + 2 * f)))
    out = np.zeros((len(elements), h, w), np.float32)
    for r0, r1, c0, c1 in pixel_blocks(h, w, *BLOCK):
        y = np.asarray(raw[r0:r1, c0:c1, :], dtype=np.float32)
        for k, (mid, left, right) in enumerate(windows):
            bg = 0.5 * (y[..., left].mean(axis=-1) + y[..., right].mean(axis=-1)) * mid.size
            out[k, r0:r1, c0:c1] = np.maximum(y[..., mid].sum(axis=-1) - bg, 0)
    return out


def atomnums(elements: list[str]) -> np.ndarray:
    return np.array([atomic_number(el) for el in elements], dtype=np.int64)


def binned(a: np.ndarray, k: int = 4) -> np.ndarray:
    """Sum over k × k pixel blocks (edges cropped)."""
    h, w = a.shape[-2] // k * k, a.shape[-1] // k * k
    a = a[..., :h, :w]
    return a.reshape(*a.shape[:-2], h // k, k, w // k, k).sum(axis=(-3, -1))


def accuracy(fit: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Binned (4 × 4) correlation (where the map varies: CV ≥ 0.2), relative RMSE and total."""
    bt, bf = binned(truth), binned(fit)
    mean = max(float(bt.mean()), 1e-12)
    cv = float(bt.std()) / mean
    corr = float(np.corrcoef(bt.ravel(), bf.ravel())[0, 1]) if cv >= 0.2 else float("nan")
    return {"truth": float(truth.mean()), "fit": float(fit.mean()), "cv": cv, "corr": corr,
            "rel_rmse": float(np.sqrt(np.mean((bf - bt) ** 2))) / mean,
            "total_ratio": float(fit.sum()) / max(float(truth.sum()), 1e-12),
            "min": float(fit.min())}


def crosstalk(maps: dict[str, np.ndarray], truth: dict[str, np.ndarray],
              element: str = "As", host: str = "Pb") -> float:
    """Mean of ``element``'s map in pixels with only ``host`` over its mean where it really is."""
    t_el, t_host, m = truth[element], truth[host], maps[element]
    host_only = (t_host > 0.3 * t_host.max()) & (t_el < 0.01 * t_el.max())
    real = t_el > 0.5 * t_el.max()
    if not host_only.any() or not real.any():
        return float("nan")
    return float(m[host_only].mean() / max(m[real].mean(), 1e-12))


def compare_with_truth(datastack: str | Path, truth_npz: str | Path) -> list[str]:
    """Lines comparing a datastack's maps with a demo scan's planted maps."""
    ds = DataStack.of(datastack)
    elements = list(ds.attrs("maxrf_elementmaps")["elements"])
    maps = ds.read("maxrf_elementmaps")
    t = np.load(truth_npz)
    truth = dict(zip([str(x) for x in t["elements"]], t["maps"], strict=True))
    rows = []
    for el, m in zip(elements, maps, strict=True):
        if el not in truth:
            rows.append(f"{el:<3} not planted: {m.mean():.2f} counts/pixel")
            continue
        a = accuracy(m, truth[el])
        corr = "flat" if np.isnan(a["corr"]) else f"r {a['corr']:.3f}"
        rows.append(f"{el:<3} planted {a['truth']:8.2f}  fitted {a['fit']:8.2f}  total "
                    f"{a['total_ratio']:.3f}  {corr}  rel. RMSE {a['rel_rmse']:.3f}")
    missed = [el for el, m in truth.items() if el not in elements and m.mean() >= 5]
    if missed:
        rows.append(f"planted but not mapped (>= 5 counts/pixel): {', '.join(missed)}")
    if "As" in elements and "As" in truth and "Pb" in truth:
        ratio = crosstalk(dict(zip(elements, maps, strict=True)), truth)
        rows.append(f"As cross-talk in lead-only pixels: {100 * ratio:.2f} % of As in orpiment")
    return rows


def model_layer(mm: MapModel) -> np.ndarray:
    """The per-pixel model as an array: one row per component (counts per channel per unit
    amplitude) and a last row of fit weights (0 outside the fitted channels), so a viewer can
    fit any pixel again in a millisecond (``fit_spectrum_with``)."""
    w = np.zeros(mm.model.templates.shape[1])
    w[mm.channels] = mm.weights
    return np.vstack([mm.model.templates, w[None, :]]).astype(np.float32)


def fit_spectrum_with(model: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(amplitudes, fitted spectrum) of ``counts`` with a ``model_layer`` array."""
    t, w = model[:-1].astype(np.float64), model[-1].astype(np.float64)
    sel = w > 0
    a = nnls_weighted(t[:, sel], np.asarray(counts, dtype=np.float64)[sel], w[sel])
    return a, a @ t
