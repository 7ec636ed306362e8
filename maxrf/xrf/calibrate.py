"""Automatic energy calibration from landmarks in a spectrum.

1. Find the peaks of the (mean) spectrum.
2. Start from the header's calibration when it has one; otherwise try every assignment of the
   anode's Rayleigh Kα (La for W) and one more reference line to two peaks, and keep the linear
   axis that puts the most reference lines (detector noise peak at 0 keV, anode lines, common
   pigment elements) on peaks.
3. Locate each reference line in range to sub-channel precision by fitting a Gaussian on a linear
   background, and least-squares fit channel → energy (a quadratic term only when it clearly helps).
4. Fit the Compton peak and derive the scatter angle.

Never returns a silent wrong axis: with fewer than three consistent landmarks, or residuals above
the tolerance, it raises ``CalibrationError`` listing what it found.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from maxrf.errors import CalibrationError, SpectrumError
from maxrf.io.rpl import EnergyCalibration
from maxrf.xrf.defaults import ANODES, DEFAULT_ANODE, DEFAULT_SIGMA, DEFAULT_TUBE_KV
from maxrf.xrf.detector import fwhm_kev
from maxrf.xrf.lines import (
    PAINTING_ELEMENTS,
    RARE_IN_PAINTINGS,
    anode_lines,
    compton_angle,
    compton_energy,
    element_lines,
    line_components,
    monochromatic,
)

# Lines that show up in most paintings; landmarks are taken from these when isolated.
REFERENCE_ELEMENTS = ("Ca", "Ti", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Sr", "Pb", "Hg", "Ba")
ISOLATION_KEV = 0.12  # a landmark closer than this to another reference line is skipped
TOLERANCE_KEV = 0.04  # a landmark must land this close to its line after the fit
OUTLIER_KEV = 0.012  # a landmark further than this from the fit of the others is dropped
MIN_EXPLAINED = 0.75  # share (by prominence weight) of the strongest peaks a valid axis explains
CONFIDENT = 0.75  # independent checks: at or above, the axis is accepted silently
DOUBTFUL = 0.5  # below CONFIDENT: accepted with a warning; below this: refused


@dataclass
class Landmark:
    name: str
    energy_kev: float
    channel: float
    residual_ev: float = 0.0
    height: float = 0.0


@dataclass
class Calibration:
    """The fitted axis: ``energy = offset + gain * ch + quadratic * ch**2`` (keV)."""

    offset_kev: float
    gain_kev: float
    quadratic_kev: float
    channels: int
    anode: str
    method: str
    landmarks: list[Landmark] = field(default_factory=list)
    compton_kev: float | None = None
    scatter_angle_deg: float | None = None
    header_agreement_ev: float | None = None
    refinement: dict | None = None  # the whole-spectrum fit: axis, χ², resolution, elements
    noise_fwhm_kev: float | None = None
    fano: float | None = None
    supported_kev: tuple[float, float] | None = None  # energies the data pin down
    warnings: list[str] = field(default_factory=list)
    confidence: float | None = None  # independent checks of the final axis (0-1)
    checks: dict | None = None  # what the checks found (peaks placed, unexplained, scatter)
    tube_kv: float = DEFAULT_TUBE_KV

    def energies(self) -> np.ndarray:
        ch = np.arange(self.channels, dtype=np.float64)
        return self.offset_kev + self.gain_kev * ch + self.quadratic_kev * ch**2

    def channel_of(self, energy_kev: float) -> float:
        if self.quadratic_kev == 0:
            return (energy_kev - self.offset_kev) / self.gain_kev
        a, b, c = self.quadratic_kev, self.gain_kev, self.offset_kev - energy_kev
        return float((-b + np.sqrt(b * b - 4 * a * c)) / (2 * a))

    def attrs(self) -> dict:
        d = asdict(self)
        d["landmarks"] = [asdict(lm) for lm in self.landmarks]
        d["rms_residual_ev"] = self.rms_residual_ev
        return d

    @property
    def rms_residual_ev(self) -> float:
        r = [lm.residual_ev for lm in self.landmarks]
        return float(np.sqrt(np.mean(np.square(r)))) if r else 0.0


def _references(anode: str, tube_kv: float = DEFAULT_TUBE_KV
                ) -> list[tuple[str, float, float]]:
    """(name, energy keV, relative weight) of every line used as a landmark: the detector's noise
    peak at 0 keV, the anode's lines (Rayleigh scatter) and isolated strong pigment lines."""
    anode = str(anode).strip().capitalize()
    refs = [("sensor 0 keV", 0.0, 1.0)]
    refs += [(f"{anode} {n} (Rayleigh)", e, w)
             for n, (e, w) in anode_lines(anode, tube_kv).items()]
    neighbours = [  # strong lines only: a weak Kb (Mn Kb next to Fe Ka) barely shifts a fit
        (el, n, e)
        for el in (*REFERENCE_ELEMENTS, *([anode] if anode in ANODES else []))
        for n, (e, w) in element_lines(el).items()
        if w >= 0.5 and e > 1.0
    ]
    for el in REFERENCE_ELEMENTS:
        if el == anode:
            continue
        for n, (e, w) in element_lines(el).items():
            if w < 0.5 or e < 2.0 or n.startswith("M"):
                continue
            close = [x for x in neighbours if x[:2] != (el, n) and abs(x[2] - e) < ISOLATION_KEV]
            if not close:
                refs.append((f"{el} {n}", e, w))
    return refs


def _check_spectrum(spectrum: np.ndarray) -> np.ndarray:
    y = np.asarray(spectrum, dtype=np.float64)
    if y.ndim != 1 or y.size < 64:
        raise SpectrumError(f"need a 1-D spectrum of at least 64 channels, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise SpectrumError(f"spectrum holds {np.sum(~np.isfinite(y))} NaN/infinite values")
    if np.ptp(y) <= 0:
        raise SpectrumError("spectrum is flat: no peaks to calibrate on")
    top = y.max()
    plateau = np.sum(y >= top * (1 - 1e-9))
    if plateau > max(8, y.size // 100):
        raise SpectrumError(f"spectrum looks saturated ({plateau} channels at the maximum)")
    return y


def find_spectrum_peaks(y: np.ndarray, max_peaks: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Channels and prominences of the most prominent peaks (noise-aware threshold)."""
    noise = np.sqrt(np.maximum(y, 0) + 1e-12)
    scale = max(np.median(noise), 1e-9 * y.max())
    peaks, props = _find_peaks(y, prominence=3 * scale * 1e-3 + 1e-12, width=1)
    if peaks.size == 0:
        return peaks, peaks.astype(float)
    prom = props["prominences"]
    # the detector's noise/pulser peak at 0 keV (the lowest channels) can be 1000x any line
    # (PyMca's XRFSpectrum.mca): lines are judged against the strongest peak above it
    low = peaks < 0.1 * y.size
    top = prom[~low].max() if (~low).any() else prom.max()
    keep = prom >= top * 2e-3
    peaks, prom = peaks[keep], prom[keep]
    order = np.argsort(prom)[::-1][:max_peaks]
    return peaks[order], prom[order]


def _known_lines(anode: str, tube_kv: float = DEFAULT_TUBE_KV) -> np.ndarray:
    """Energies of every line a painting scan may show (for judging a candidate axis)."""
    energies = [0.0] + [e for e, _w in anode_lines(anode, tube_kv).values()]
    name = str(anode).strip().capitalize()
    if name in ANODES:  # the tube's own multiplet components (W Lb1 and Lb2 are 0.3 keV apart)
        comps = line_components(name, name, tube_kv)
        top = max((c.intensity for c in comps), default=0.0)
        energies += [c.energy_kev for c in comps if c.intensity >= 0.05 * top > 0]
    common = [e for e in PAINTING_ELEMENTS if e not in RARE_IN_PAINTINGS]
    for el in (*common, *(e for e in ANODES if e not in common)):
        energies += [e for e, w in element_lines(el).values() if w >= 0.1 and e > 1.0]
    return np.array(sorted(set(energies)))


def _compton_windows(anode: str, tube_kv: float = DEFAULT_TUBE_KV) -> list[tuple[float, float]]:
    return [(compton_energy(e, 175.0), compton_energy(e, 40.0))
            for e, _ in anode_lines(anode, tube_kv).values()]


def _scores(gains, offsets, peaks, weight, known, windows, tol_kev) -> np.ndarray:
    """For each candidate axis: weight of the peaks it explains minus the weight it leaves
    unexplained (a peak is explained by a known line, or by lying in a Compton window)."""
    e = offsets[:, None] + gains[:, None] * peaks[None, :]  # (axes, peaks)
    idx = np.clip(np.searchsorted(known, e), 1, known.size - 1)
    nearest = np.minimum(np.abs(e - known[idx - 1]), np.abs(e - known[idx]))
    explained = nearest <= tol_kev[:, None]
    for lo, hi in windows:
        explained |= (e >= lo) & (e <= hi)
    return (np.where(explained, weight, -weight)).sum(axis=1)


def _explained_fraction(y: np.ndarray, coef: np.ndarray, anode: str,
                        tube_kv: float = DEFAULT_TUBE_KV) -> float:
    """Share of the strongest peaks' weight that known lines (or Compton) explain on this axis."""
    peaks, prom = find_spectrum_peaks(y, max_peaks=15)
    if peaks.size == 0:
        return 0.0
    weight = 1.0 + np.log1p(100 * prom / prom.max())
    e = _axis(coef, peaks.astype(float))
    known = _known_lines(anode, tube_kv)
    ok = np.min(np.abs(e[:, None] - known[None, :]), axis=1) <= max(1.5 * coef[1], 0.05)
    for lo, hi in _compton_windows(anode, tube_kv):
        ok |= (e >= lo) & (e <= hi)
    return float(weight[ok].sum() / weight.sum())


def candidate_axes(y, anode: str, refs, tube_kv: float = DEFAULT_TUBE_KV,
                   n: int = 10) -> list[tuple[float, float]]:
    """(gain, offset) starts, best first: put the anode's main line on one of the strongest peaks
    and any known line on another; rank the axes by how many (and how strong) peaks they explain
    and keep ``n`` distinct ones (a Compton peak far stronger than its Rayleigh line can win the
    first place on a wrong axis: the landmarks then decide)."""
    peaks, prom = find_spectrum_peaks(y, max_peaks=20)
    if peaks.size < 2:
        raise CalibrationError(f"found {peaks.size} peak(s); need at least 2 to calibrate")
    weight = 1.0 + np.log1p(100 * prom / prom.max())
    known = _known_lines(anode, tube_kv)
    windows = _compton_windows(anode, tube_kv)
    tube = anode_lines(anode, tube_kv)  # none excited: pin the sensor peak (0 keV) instead
    anode_e = max(tube.values(), key=lambda v: v[1])[0] if tube else 0.0
    found: list[tuple[float, float, float]] = []
    for i in range(peaks.size):
        for j in range(peaks.size):
            dc = float(peaks[i] - peaks[j])
            if dc == 0:
                continue
            gains = (anode_e - known) / dc
            offsets = anode_e - gains * peaks[i]
            ok = (gains >= 0.001) & (gains <= 0.2) & (offsets >= -3.0) & (offsets <= 3.0)
            if not ok.any():
                continue
            g, o = gains[ok], offsets[ok]
            scores = _scores(g, o, peaks, weight, known, windows, np.maximum(1.5 * g, 0.05))
            k = int(np.argmax(scores))
            if scores[k] > 0:
                found.append((float(scores[k]), float(g[k]), float(o[k])))
    out: list[tuple[float, float]] = []
    for _score, g, o in sorted(found, reverse=True):
        if all(abs(g - g2) > 0.01 * g2 or abs(o - o2) > 0.05 for g2, o2 in out):
            out.append((g, o))
        if len(out) == n:
            break
    if not out:
        shown = ", ".join(f"ch {p}" for p in sorted(peaks[:12]))
        raise CalibrationError(
            f"no axis explains the peaks for a {anode} anode (peaks at {shown}); "
            "check the anode, or give energies=(start_kev, stop_kev)"
        )
    return out


def _gauss(x, a, mu, s, b0, b1):
    return a * np.exp(-0.5 * ((x - mu) / s) ** 2) + b0 + b1 * (x - mu)


def fit_peak(y: np.ndarray, center: float, sigma_ch: float) -> tuple[float, float] | None:
    """Sub-channel centre and height of a Gaussian on a linear background near ``center``."""
    half = max(4, int(2.5 * sigma_ch))
    lo, hi = int(round(center)) - half, int(round(center)) + half + 1
    if lo < 0 or hi > y.size:
        return None
    x = np.arange(lo, hi, dtype=np.float64)
    seg = y[lo:hi]
    base = min(seg[0], seg[-1])
    a0 = seg.max() - base
    if a0 <= 0:
        return None
    mu0 = lo + float(np.argmax(seg))
    try:
        p, _ = _curve_fit(_gauss, x, seg, p0=(a0, mu0, sigma_ch, base, 0.0), maxfev=4000)
    except (RuntimeError, ValueError):
        return None
    a, mu, s = p[0], p[1], abs(p[2])
    if a <= 0 or not (lo + 1 <= mu <= hi - 2) or not (0.3 * sigma_ch <= s <= 3 * sigma_ch):
        return None
    noise = np.sqrt(max(base, 1e-12) / max(sigma_ch, 1))
    if a < 3 * noise and a < 0.01 * y.max():
        return None
    return float(mu), float(a)


def _detector_sigma_ch(energy: float, gain: float, smoothing_sigma: float) -> float:
    fwhm = fwhm_kev(energy)
    return float(np.hypot(fwhm / 2.3548 / gain, smoothing_sigma))


def _fit_axis(landmarks, quadratic: bool) -> np.ndarray:
    """Least squares channel -> energy, each landmark weighted by sqrt(height) (centroid
    precision grows with the counts in the peak)."""
    ch = np.array([lm.channel for lm in landmarks])
    en = np.array([lm.energy_kev for lm in landmarks])
    w = np.sqrt(np.maximum([lm.height for lm in landmarks], 1e-12))
    deg = 2 if quadratic else 1
    if len(ch) <= deg:
        return np.array([0.0, 0.0, 0.0])
    return np.polyfit(ch, en, deg, w=w / w.max())[::-1]


def _locate(y, coef, refs, smoothing_sigma) -> list[Landmark]:
    offset, gain = coef[0], coef[1]
    quad = coef[2] if len(coef) > 2 else 0.0
    marks = []
    for name, energy, _w in refs:
        if quad:
            disc = gain**2 - 4 * quad * (offset - energy)
            guess = (-gain + np.sqrt(max(disc, 0))) / (2 * quad)
        else:
            guess = (energy - offset) / gain
        if not 5 <= guess <= y.size - 6:
            continue
        found = fit_peak(y, guess, _detector_sigma_ch(energy, gain, smoothing_sigma))
        if found is None:
            continue
        mu, height = found
        if abs(mu - guess) * gain > 3 * TOLERANCE_KEV + 0.05:
            continue
        marks.append(Landmark(name, float(energy), mu, 0.0, height))
    # A channel claimed by two lines (e.g. Pb La / As Ka) is ambiguous: keep neither.
    chans = np.array([m.channel for m in marks])
    return [m for m in marks if np.sum(np.abs(chans - m.channel) < 1.0) == 1]


def calibrate(
    spectrum: np.ndarray,
    anode: str = DEFAULT_ANODE,
    header: EnergyCalibration | None = None,
    smoothing_sigma: float = DEFAULT_SIGMA,
    refine: bool = True,
    counts_scale: float = 1.0,
    tube_kv: float = DEFAULT_TUBE_KV,
) -> Calibration:
    """Calibrate the channel axis of ``spectrum`` (best: the mean spectrum of the raw counts,
    with ``counts_scale`` = number of pixels so that it counts photons). Landmarks give a robust
    start; with ``refine`` the whole spectrum is then fitted with the spectrum model (seen
    through the same smoothing), and the better axis of the two by χ² is kept. A header axis
    that the landmarks cannot confirm (too few of them, e.g. a low voltage that excites no tube
    line) is kept, with a warning, when it explains the spectrum's strongest peaks."""
    y = _check_spectrum(spectrum)
    cal, why = None, ""
    try:
        cal = _calibrate(y, anode, header, smoothing_sigma, refine, counts_scale, tube_kv)
    except CalibrationError as exc:
        if header is None:
            raise
        why = exc.reason.split(". ")[0]
    if header is not None:
        # the instrument's own axis is a candidate of its own, judged by the same checks
        h_conf, _ = check_axis(y, (header.offset_kev, header.gain_kev, 0.0), anode, tube_kv,
                               smoothing_sigma)
        l_conf = -1.0 if cal is None else check_axis(
            y, (cal.offset_kev, cal.gain_kev, cal.quadratic_kev), anode, tube_kv,
            smoothing_sigma)[0]
        if cal is None and h_conf < DOUBTFUL:
            raise CalibrationError(
                f"{why}; the header's axis fails the checks too (confidence {h_conf:.2f}). "
                "Check the anode and tube voltage, or give energies=(start_kev, stop_kev)")
        if cal is None or h_conf > l_conf + 0.1:
            reason = (f"landmarks could not confirm an axis ({why})" if cal is None else
                      f"it places the peaks better than the landmark axis ({h_conf:.2f} vs "
                      f"{l_conf:.2f})")
            cal = _header_calibration(y, anode, header, smoothing_sigma, refine, counts_scale,
                                      tube_kv, reason)
    _judge(y, cal, smoothing_sigma)
    return cal


def _header_calibration(y, anode, header, smoothing_sigma, refine, counts_scale, tube_kv,
                        reason: str) -> Calibration:
    """The header's axis kept as it is (the reason recorded), with Compton and support."""
    cal = Calibration(header.offset_kev, header.gain_kev, 0.0, y.size, anode, "header",
                      tube_kv=float(tube_kv))
    cal.warnings.append(f"the header's calibration is kept: {reason}")
    _compton(y, cal, smoothing_sigma)
    if refine:  # the model's resolution and angle; the axis stays the header's
        axis = (cal.offset_kev, cal.gain_kev, cal.quadratic_kev)
        refine_axis(y * counts_scale, cal, tube_kv, smoothing_sigma, pixels=counts_scale)
        cal.offset_kev, cal.gain_kev, cal.quadratic_kev = axis
        cal.method = "header"
    _support(cal)
    cal.header_agreement_ev = 0.0
    return cal


def _landmark_axis(y, start, refs, anode, tube_kv, smoothing_sigma):
    """Locate the reference lines from a start axis and refit, three times; returns the axis,
    its landmarks and the share of the strongest peaks it explains."""
    coef = np.array([start[0], start[1], 0.0])
    marks: list[Landmark] = []
    for _ in range(3):
        marks = _reject_outliers(_locate(y, coef, refs, smoothing_sigma))
        if len(marks) < 3:
            break
        coef = np.append(_fit_axis(marks, quadratic=False), 0.0)[:3]
    explained = _explained_fraction(y, coef, anode, tube_kv) if len(marks) >= 3 else 0.0
    return coef, marks, explained


def _calibrate(y, anode, header, smoothing_sigma, refine, counts_scale, tube_kv) -> Calibration:
    """The landmark calibration (then the whole-spectrum refinement) of a checked spectrum."""
    refs = _references(anode, tube_kv)
    if header is not None:
        starts = [(header.gain_kev, header.offset_kev)]
        method = "landmarks (started from the header calibration)"
    else:
        starts = candidate_axes(y, anode, refs, tube_kv)
        method = "landmarks (automatic search)"
    failures, passed = [], []
    for gain, offset in starts:  # the best-scored start whose landmarks explain the peaks
        coef, marks, explained = _landmark_axis(y, (offset, gain), refs, anode, tube_kv,
                                                smoothing_sigma)
        if len(marks) >= 3 and explained >= MIN_EXPLAINED:
            conf = check_axis(y, coef, anode, tube_kv, smoothing_sigma)[0]
            passed.append((-conf, len(passed), coef, marks))
            if conf >= 0.9:  # and passes the independent checks well: look no further
                break
            continue
        got = ", ".join(f"{m.name} at ch {m.channel:.1f}" for m in marks) or "none"
        failures.append(
            f"found {len(marks)} landmark(s) ({got}); need 3" if len(marks) < 3
            else f"the axis from {got} explains only {explained:.0%} of the strongest peaks")
    if not passed:
        raise CalibrationError(
            f"{failures[0]}. Check the anode ({anode}) or give energies=(start_kev, stop_kev)"
        )
    _conf, _i, coef, marks = min(passed, key=lambda p: p[:2])
    if len(marks) >= 5:
        quad = _fit_axis(marks, quadratic=True)
        if _rms(marks, quad) < 0.5 * _rms(marks, coef) and abs(quad[2]) * y.size**2 < 0.2:
            coef = quad
    for m in marks:
        m.residual_ev = float((_axis(coef, m.channel) - m.energy_kev) * 1000)
    cal = Calibration(
        offset_kev=float(coef[0]),
        gain_kev=float(coef[1]),
        quadratic_kev=float(coef[2]),
        channels=y.size,
        anode=anode,
        method=method,
        landmarks=marks,
        tube_kv=float(tube_kv),
    )
    if cal.rms_residual_ev > 1000 * TOLERANCE_KEV:
        raise CalibrationError(
            f"landmarks disagree (rms residual {cal.rms_residual_ev:.0f} eV): "
            + ", ".join(f"{m.name} {m.residual_ev:+.0f} eV" for m in marks)
        )
    _compton(y, cal, smoothing_sigma)
    if refine:
        refine_axis(y * counts_scale, cal, tube_kv, smoothing_sigma, pixels=counts_scale)
    _support(cal)
    if header is not None:
        ch = np.arange(y.size)
        diff = header.offset_kev + header.gain_kev * ch - cal.energies()
        cal.header_agreement_ev = float(np.abs(diff[cal.energies() <= 40]).max() * 1000)
    return cal


def _axis(coef, ch):
    return coef[0] + coef[1] * ch + (coef[2] if len(coef) > 2 else 0.0) * ch**2


def _rms(marks, coef) -> float:
    return float(np.sqrt(np.mean([(_axis(coef, m.channel) - m.energy_kev) ** 2 for m in marks])))


def _reject_outliers(marks: list[Landmark]) -> list[Landmark]:
    """Drop landmarks that disagree with a fit of the others (a blend or a misidentified line)."""
    marks = list(marks)
    while len(marks) > 3:
        coef = _fit_axis(marks, quadratic=False)
        res = np.array([abs(_axis(coef, m.channel) - m.energy_kev) for m in marks])
        worst = int(np.argmax(res))
        if res[worst] <= OUTLIER_KEV:
            break
        marks.pop(worst)
    return marks


def _two_gauss(x, a1, m1, s1, a2, m2, s2, b0, b1):
    return (
        a1 * np.exp(-0.5 * ((x - m1) / s1) ** 2)
        + a2 * np.exp(-0.5 * ((x - m2) / s2) ** 2)
        + b0
        + b1 * (x - m2)
    )


def _compton(y: np.ndarray, cal: Calibration, smoothing_sigma: float) -> None:
    """Fit the Compton peak of the anode's main line next to its Rayleigh peak (one joint fit of
    two Gaussians on a linear background) and derive the scatter angle."""
    tube = anode_lines(cal.anode, cal.tube_kv)
    if not tube:  # the voltage excites no tube line: no Rayleigh/Compton pair to fit
        return
    _name, (e0, _w) = max(tube.items(), key=lambda kv: kv[1][1])
    e_lo, e_hi = compton_energy(e0, 175.0), compton_energy(e0, 40.0)
    rayleigh = next((m for m in cal.landmarks if abs(m.energy_kev - e0) < 1e-6), None)
    if rayleigh is None:
        return
    s_r = _detector_sigma_ch(e0, cal.gain_kev, smoothing_sigma)
    lo = int(cal.channel_of(e_lo) - 4 * s_r)
    hi = int(rayleigh.channel + 3 * s_r)
    if lo < 0 or hi >= y.size or hi - lo < 10:
        return
    x = np.arange(lo, hi, dtype=np.float64)
    seg = y[lo:hi]
    in_window = (x >= cal.channel_of(e_lo)) & (x <= cal.channel_of(e_hi))
    if not in_window.any():
        return
    m1 = x[in_window][int(np.argmax(seg[in_window]))]
    p0 = (
        seg[in_window].max(),
        m1,
        2.5 * s_r,
        rayleigh.height,
        rayleigh.channel,
        s_r,
        max(seg.min(), 0.0),
        0.0,
    )
    try:
        p, _ = _curve_fit(_two_gauss, x, seg, p0=p0, maxfev=8000)
    except (RuntimeError, ValueError):
        return
    ce = float(_axis([cal.offset_kev, cal.gain_kev, cal.quadratic_kev], p[1]))
    if p[0] > 0 and e_lo <= ce <= e_hi and abs(p[2]) > 0.5 * s_r:
        cal.compton_kev = ce
        cal.scatter_angle_deg = compton_angle(e0, ce)


def manual_calibration(
    channels: int,
    anode: str = DEFAULT_ANODE,
    energies: tuple[float, float] | None = None,
    gain_kev: float | None = None,
    offset_kev: float = 0.0,
    tube_kv: float = DEFAULT_TUBE_KV,
) -> Calibration:
    """A user-given axis: ``energies=(start, stop)`` for the first/last channel, or gain/offset."""
    if energies is not None:
        start, stop = map(float, energies)
        if not stop > start:
            raise CalibrationError(f"energies must rise: got start {start}, stop {stop}")
        gain, offset = (stop - start) / max(channels - 1, 1), start
    elif gain_kev is not None:
        if not gain_kev > 0:
            raise CalibrationError(f"gain must be positive, got {gain_kev}")
        gain, offset = float(gain_kev), float(offset_kev)
    else:
        raise CalibrationError("manual calibration needs energies=(start, stop) or a gain")
    return Calibration(offset, gain, 0.0, channels, anode, "manual", tube_kv=float(tube_kv))


EXTRAPOLATION_KEV = 8.0  # warn when the axis reaches this far past the last strong line


# The axis is refined with misfit weights when a first fit's reduced χ² is above ROBUST_CHI2 (the
# landmark axis of the real M6 spectrum: 165; XRFSpectrum.mca: 560) and at least ROBUST_SHARE of
# its χ² lies in the zero peak (below 1 keV) or among the scattered tube lines: the parts of a
# real spectrum the model knows least (XRFSpectrum.mca: 72 % in its zero peak, the axis then
# 28 eV off at 10 keV; the M6 axis 17 eV off at 10.5 keV). A misfit spread over every line (a
# generated scan's tails) is the lines' own and keeps Poisson weights.
ROBUST_CHI2 = 20.0
ROBUST_SHARE = 0.5


def _misfit_outside_lines(counts: np.ndarray, fit) -> bool:
    """Whether ≥ ``ROBUST_SHARE`` of the fit's χ² lies below 1 keV or among the scattered tube
    lines."""
    from maxrf.xrf.fit import scatter_zone

    e = fit.model.energies
    r2 = (np.asarray(counts, np.float64) - fit.fitted()) ** 2 / np.maximum(counts, 1.0)
    inside = (e >= fit.fit_range[0]) & (e <= fit.fit_range[1])
    lo, hi = scatter_zone(fit.instrument)
    where = inside & ((e < 1.0) | ((e >= lo) & (e <= hi)))
    total = float(r2[inside].sum())
    return total > 0 and float(r2[where].sum()) >= ROBUST_SHARE * total


def refine_axis(
    counts: np.ndarray,
    cal: Calibration,
    tube_kv: float = DEFAULT_TUBE_KV,
    smoothing_sigma: float = 0.0,
    pixels: float = 1.0,
) -> None:
    """Fit the whole spectrum (elements proposed on the landmark axis, every multiplet line,
    escape peaks, Rayleigh/Compton, continuum) with the axis, resolution and scatter angle free;
    keep the refined axis only when it lowers χ² against the landmark axis. ``counts`` is the
    sum of ``pixels`` spectra (a proposed element needs 0.5 counts per pixel)."""
    from maxrf.xrf.fit import (
        MIN_COUNTS_PER_PIXEL,
        default_fit_range,
        misfit_weights,
        propose,
        refine,
    )
    from maxrf.xrf.model import Instrument

    try:
        inst = Instrument(anode=str(cal.anode), tube_kv=float(tube_kv))
        if cal.scatter_angle_deg:
            inst = inst.with_(angle_deg=float(cal.scatter_angle_deg))
        energies = cal.energies()
        fit_range = (min(-0.3, float(energies[0]) + 0.05) if energies[0] < -0.3 else 1.0,
                     default_fit_range(energies, inst)[1])

        def proposed(energies: np.ndarray, inst: Instrument) -> list[str]:
            return propose([("mean", counts, pixels)], energies, inst, (1.0, fit_range[1]),
                           min_counts=0.0, smoothing_sigma=smoothing_sigma,
                           min_per_pixel=MIN_COUNTS_PER_PIXEL if pixels > 1 else 0.0).elements

        def axis_free(start, elements, inst, robust: bool):
            return refine(counts, start, elements, inst, fit_range, fit_axis=True,
                          quadratic=cal.quadratic_kev != 0, smoothing_sigma=smoothing_sigma,
                          weights=weights, free_beam=robust)

        elements = proposed(energies, inst)
        axis = (cal.offset_kev, cal.gain_kev, cal.quadratic_kev)
        weights = None
        first = refine(counts, axis, elements, inst, fit_range, smoothing_sigma=smoothing_sigma)
        robust = first.chi2_reduced > ROBUST_CHI2 and _misfit_outside_lines(counts, first)
        if robust:  # a real spectrum: where the model misfits most (Compton, a tail) must not
            # place the axis against every fluorescence line, nor must the zero peak, which a
            # real detector may put off the fluorescence lines' axis (XRFSpectrum.mca: 28 eV)
            weights = misfit_weights(counts, first)
            inst = first.instrument
            fit_range = (max(fit_range[0], 1.0), fit_range[1])
        free = axis_free(axis, elements, inst, robust)
        if robust:  # the elements again on the refined axis (a landmark axis 80 eV off at
            # 18 keV missed As under Pb Lα on XRFSpectrum.mca, and the axis then bent to
            # explain its Kβ), and the axis refined once more with them
            again = proposed(free.model.energies, free.instrument)
            if again != elements:
                elements = again
                free = axis_free(free.axis, elements, free.instrument, True)
        # the landmark axis judged with the same instrument: the refinement must beat it
        fixed = refine(counts, axis, elements, free.instrument, fit_range, max_nfev=1,
                       smoothing_sigma=smoothing_sigma, weights=weights)
    except (ValueError, np.linalg.LinAlgError) as exc:  # keep the landmark axis
        cal.warnings.append(f"whole-spectrum refinement failed ({exc}); landmark axis kept")
        return
    better = free.chi2_reduced < fixed.chi2_reduced
    best = free if better else fixed
    cal.refinement = {
        "elements": elements,
        "landmark_axis_reduced_chi2": round(fixed.chi2_reduced, 4),
        "refined_axis_reduced_chi2": round(free.chi2_reduced, 4),
        "refined_axis": list(free.axis),
        "kept": "refined" if better else "landmarks",
        "weights": "Poisson / local misfit" if robust else "Poisson",
        "fit_range_kev": list(fit_range),
        "instrument": best.instrument.attrs(),
    }
    if better:
        shift = np.abs(free.axis[0] + free.axis[1] * np.arange(cal.channels)
                       + free.axis[2] * np.arange(cal.channels) ** 2 - cal.energies())
        cal.refinement["max_change_ev"] = round(float(shift[cal.energies() <= 40].max()) * 1e3, 2)
        cal.offset_kev, cal.gain_kev, cal.quadratic_kev = free.axis
        cal.method += " + whole-spectrum refinement"
        for m in cal.landmarks:
            m.residual_ev = float((_axis(free.axis, m.channel) - m.energy_kev) * 1000)
    beam = monochromatic(best.instrument.anode)
    if robust and beam is not None and better:  # the beam's own energy, as the lines place it
        cal.refinement["beam_kev"] = round(beam, 5)
    # the resolution as fitted with the zero peak in the range (without it the noise term is
    # free to trade with Fano's: 0.02 keV at its bound on XRFSpectrum.mca)
    shape = first.instrument if robust else best.instrument
    cal.noise_fwhm_kev = shape.noise_fwhm_kev
    cal.fano = shape.fano
    cal.refinement["scatter_angle_deg"] = round(float(best.instrument.angle_deg), 2)
    # The whole-spectrum fit models the Compton shoulder that pulls the landmark's two-Gaussian
    # fit down in energy (111° for a planted 110°); it is trusted where the Compton peak stands
    # at least a resolution width below its Rayleigh line (not for Cr: 76 eV at 110°).
    tube = anode_lines(cal.anode, tube_kv)
    e0 = max(tube.values(), key=lambda v: v[1])[0] if tube else 0.0
    shift = e0 - compton_energy(e0, best.instrument.angle_deg)
    if tube and cal.scatter_angle_deg and shift >= float(best.instrument.fwhm_kev(e0)):
        cal.refinement["landmark_scatter_angle_deg"] = round(float(cal.scatter_angle_deg), 2)
        cal.scatter_angle_deg = float(best.instrument.angle_deg)
    strong = [e for e, name, a in _strong_lines(best) if a > 0]
    if strong:
        cal.supported_kev = (min(0.0 if energies[0] < -0.1 else 1.0, min(strong)), max(strong))


def _strong_lines(fit) -> list[tuple[float, str, float]]:
    """(energy, component, amplitude) of the strongest line of every fitted component whose
    amplitude stands well above its noise (sensor, Rayleigh and element families)."""
    out = []
    e = fit.model.energies
    for name, kind, row, a in zip(fit.model.names, fit.model.kinds, fit.model.templates,
                                  fit.amplitudes, strict=True):
        if kind == "continuum" or a <= 0 or name.startswith(("compton-tail", "compton-shoulder")):
            continue
        peak = float(e[int(np.argmax(row))])
        if a * row.max() > 25 * np.sqrt(max(a * row.max(), 1.0)):  # a clear peak
            out.append((peak, name, float(a)))
    return out


def check_axis(y: np.ndarray, coef, anode: str, tube_kv: float = DEFAULT_TUBE_KV,
               smoothing_sigma: float = 0.0) -> tuple[float, dict]:
    """Independent checks of an axis, not the ones that chose it: (1) the strongest peaks away
    from 0 keV and the tube's scatter must each lie on a known line (or its Si escape) within
    the detector's resolution; (2) the tube's strongest line must stand on a peak of its
    Rayleigh scatter (the highest-energy of the Compton/Rayleigh pair). Returns the confidence
    (0-1: the weaker of the two) and what was found."""
    coef = np.asarray(coef, dtype=np.float64)
    peaks, prom = find_spectrum_peaks(y, max_peaks=20)
    e = _axis(coef, peaks.astype(float))
    gain = float(coef[1])
    tube = anode_lines(anode, tube_kv)
    hi_e = max((v[0] for v in tube.values()), default=None)
    lo_e = min((v[0] for v in tube.values()), default=None)
    zone = ((float(compton_energy(lo_e, 180.0)) - 0.3, hi_e + 0.3) if tube
            else (np.inf, np.inf))
    keep = (e > 0.9) & ~((e >= zone[0]) & (e <= zone[1]))
    known = _known_lines(anode, tube_kv)
    known = np.unique(np.r_[known, known[known > 2.5] - 1.74])  # Si escape peaks
    fwhm = fwhm_kev(e)
    tol = np.hypot(0.5 * fwhm, max(2 * gain, smoothing_sigma * gain)) + 0.01
    dist = np.min(np.abs(e[:, None] - known[None, :]), axis=1) if known.size else np.inf + e
    weight = 1.0 + np.log1p(100 * prom / max(prom[keep].max(), 1e-12)) if keep.any() else prom
    placed = dist <= tol
    fluo = float(weight[keep & placed].sum() / weight[keep].sum()) if keep.any() else 1.0
    unexplained = sorted(round(float(x), 2) for x in e[keep & ~placed])
    # each strong tube line stands on a peak, and no unexplained peak lies just above it where
    # its Rayleigh would be if the "line" were really its Compton peak (Compton >> Rayleigh)
    scatter, where, top = 1.0, [], None
    lines = [(en, w) for en, w in tube.values()
             if _axis(coef, 0.0) < en < _axis(coef, float(y.size - 1))]
    if lines:
        strongest = max(w for _e, w in lines)
        top = round(max(lines, key=lambda v: v[1])[0], 3)
        tube_e = np.array([en for en, _w in tube.values()])
        ok_w = total_w = 0.0
        for en, w in lines:
            if w < 0.3 * strongest:
                continue
            width = fwhm_kev(en) + 2 * gain
            near = np.abs(e - en) <= width
            shift = en - float(compton_energy(en, 180.0))
            above = (e > en + width) & (e <= en + shift + width)
            above &= np.min(np.abs(e[:, None] - tube_e[None, :]), axis=1) > width
            for other in tube_e[tube_e > en]:  # Compton peaks of higher tube lines (Rh Kb)
                above &= ~((e >= compton_energy(other, 180.0) - width)
                           & (e <= compton_energy(other, 40.0) + width))
            if near.any():  # a real Rayleigh above a Compton peak is not a speck beside it
                above &= prom >= 0.1 * prom[near].max()
            total_w += w
            if near.any() and not above.any():
                ok_w += w
            else:
                where.append(round(float(en), 3))
        scatter = ok_w / total_w if total_w else 1.0
    # a peak that dominates the spectrum from its lowest channels is the detector's noise (or
    # pulser) peak: 0 keV
    sensor = 1.0
    low = peaks < 0.05 * y.size
    if low.any():
        noise_peak = peaks[low][np.argmax(prom[low])]
        if prom[low].max() >= 0.5 * prom.max():  # a peak that dominates the spectrum
            sensor = float(abs(_axis(coef, float(noise_peak))) <= max(0.1, 3 * gain))
    checks = {"fluorescence_placed": round(fluo, 3), "unexplained_kev": unexplained[:8],
              "tube_lines_misplaced_kev": where, "tube_line_kev": top,
              "scatter_placed": round(scatter, 3), "zero_peak_placed": sensor}
    return min(fluo, scatter, sensor), checks


def _judge(y: np.ndarray, cal: Calibration, smoothing_sigma: float) -> None:
    """Confidence of the final axis from independent checks: a warning below CONFIDENT, a
    refusal (naming what disagrees) below DOUBTFUL. Never a silent wrong axis."""
    coef = np.array([cal.offset_kev, cal.gain_kev, cal.quadratic_kev])
    conf, checks = check_axis(y, coef, cal.anode, cal.tube_kv, smoothing_sigma)
    cal.confidence, cal.checks = round(conf, 3), checks
    if conf >= CONFIDENT:
        return
    what = []
    if checks["scatter_placed"] < 1:
        what.append("the tube's scattered line(s) at "
                    + ", ".join(f"{x:g}" for x in checks["tube_lines_misplaced_kev"])
                    + " keV land on no peak of their own (or on a Compton peak)")
    if checks["fluorescence_placed"] < CONFIDENT:
        what.append(f"only {checks['fluorescence_placed']:.0%} of the strongest peaks lie on "
                    "known lines (unexplained: "
                    + ", ".join(f"{x:g}" for x in checks["unexplained_kev"][:5]) + " keV)")
    why = "; ".join(what)
    if conf < DOUBTFUL:
        raise CalibrationError(
            f"the energy axis fails its checks ({why}): check the anode and tube voltage, or "
            "give the axis with --energies START,STOP (keV of the first and last channel)")
    cal.warnings.append(f"the energy axis is uncertain (confidence {conf:.2f}: {why}); check "
                        "it, or give it with --energies START,STOP")


def _support(cal: Calibration) -> None:
    """The energy range the landmarks (or the refinement's strong lines) pin down, and a
    warning when the axis reaches far beyond it."""
    lms = [m.energy_kev for m in cal.landmarks]
    lo, hi = (min(lms), max(lms)) if lms else (0.0, 0.0)
    if cal.supported_kev:
        lo, hi = min(lo, cal.supported_kev[0]), max(hi, cal.supported_kev[1])
    cal.supported_kev = (float(lo), float(hi))
    top = float(min(cal.energies()[-1], 40.0))
    if top > hi + EXTRAPOLATION_KEV:
        cal.warnings.append(
            f"the axis is extrapolated from {hi:.1f} keV (last strong line) to {top:.1f} keV; "
            "energies above the last line are less certain"
        )


def _find_peaks(y, **kwargs):
    """``scipy.signal.find_peaks``, imported on first use (scipy.signal takes ~0.4 s to import)."""
    from scipy.signal import find_peaks

    return find_peaks(y, **kwargs)


def _curve_fit(*args, **kwargs):
    """``scipy.optimize.curve_fit``, imported on first use (scipy.optimize: ~0.25 s). Its
    "covariance could not be estimated" warning is silenced: no caller uses the covariance
    (each judges the fitted peak itself), and it reached users as a stray scipy line in the
    middle of ``make demo``."""
    import warnings

    from scipy.optimize import OptimizeWarning, curve_fit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        return curve_fit(*args, **kwargs)
