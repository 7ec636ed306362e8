"""Synthetic MA-XRF scans with realistic physics and their ground truth, streamed to disk.

Each pixel's expected spectrum is a sum of components (detector noise peak at 0 keV, scattered
tube continuum, anode Rayleigh and Compton lines, element lines at the detector's resolution),
weighted by smooth "pigment" maps plus a few single-pixel hot spots; counts are Poisson draws.
Deterministic per seed; memory stays bounded (a few hundred MB) whatever the scan size.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from maxrf.io.rpl import EnergyCalibration, format_rpl
from maxrf.xrf.detector import fwhm_kev
from maxrf.xrf.lines import anode_lines, compton_energy, element_lines, tube_series

# Element, region shape and relative strength of the "paint layers" of a demo painting.
# "over:X" places the element only where X is (orpiment over lead white); "with:X" follows X's
# map with a share of its own (the sulphur of vermilion, HgS, plus some gypsum).
PIGMENTS = (
    ("Ar", "flat", 0.02),  # air between head and painting
    ("Ca", "flat", 0.10),  # chalk ground
    ("Pb", "strokes", 0.35),  # lead white
    ("Fe", "blobs", 0.25),  # ochre
    ("Hg", "blobs", 0.20),  # vermilion
    ("S", "with:Hg", 0.06),  # vermilion's sulphur, and gypsum
    ("As", "over:Pb", 0.12),  # orpiment painted over lead white
    ("Cu", "strokes", 0.15),  # azurite / verdigris
    ("Mn", "blobs", 0.05),  # umber
    ("K", "flat", 0.03),
)
# Family strengths relative to the xraylib cross sections (M lines: absorbed on the way out).
SERIES_STRENGTH = {"K": 1.0, "L": 1.0, "M": 0.15}
HOTSPOT_ELEMENTS = ("Sr", "Au", "Ti", "Zn", "Co", "Sn")
# With ``layers``: (element under, pigment over it, its compound, mass thickness g/cm² where that
# pigment is thickest): ochre over lead white absorbs Pb Lα 45 %, Lβ 30 %, Pb M all but wholly;
# azurite over vermilion likewise Hg. Line ratios then change pixel by pixel.
OVERLAYERS = (
    ("Pb", "Fe", "Fe2O3", 0.006),
    ("Hg", "Cu", "Cu3C2H2O8", 0.004),
)
# With ``light``: elements whose K lines sit at 2-3 keV (bone black's phosphorus, the chlorine of
# chlorides and of a damaged varnish), among sulphur, argon and the Pb M and Hg M lines.
LIGHT_PIGMENTS = (
    ("P", "blobs", 0.05),
    ("Cl", "strokes", 0.04),
)
MIN_LINE_KEV = 1.0  # air and the detector window absorb lower lines
COMPTON_SHOULDER = 0.3  # share of a Compton peak in its low-energy shoulder


@dataclass
class DemoSpec:
    """Parameters of a synthetic scan (all have realistic Bruker M6 defaults)."""

    height: int = 64
    width: int = 96
    channels: int = 4096
    seed: int = 0
    gain: float = 0.010002  # keV per channel
    offset: float = -0.956  # keV at channel 0
    anode: str = "Rh"
    angle: float = 110.0  # scatter angle, degrees
    tube_kv: float = 50.0
    counts: float = 2000.0  # mean counts per spectrum
    hotspots: int = 3
    dtype: str = "<u2"
    record_by: str = "vector"
    layout: str = "A"
    noise_fwhm_kev: float = 0.0715  # electronic noise; gives ~140 eV FWHM at 5.9 keV
    fano: float = 0.115
    layers: bool = False  # paint over paint: Pb under ochre, Hg under azurite (OVERLAYERS)
    pulser_hz: float = 0.0  # a zero-energy pulser (Bruker M6: 10 kHz); 0: the noise peak only
    dwell_ms: float = 30.0  # real time per pixel (with a pulser: sets the pulser's counts)
    dead_us: float = 1.0  # dead time per event: ~6 % at 2000 counts in 30 ms (an M6 pixel)
    tail: float = 0.0  # share of each line's counts in a low-energy tail (at 5.9 keV; ∝ 1/E)
    tail_kev: float = 0.12  # the tail's decay length
    shelf: float = 0.0  # share of each line's counts in a flat shelf down to 0 keV (∝ 1/E)
    pileup: float = 0.0  # share of a mean pixel's counts that pile up in pairs (∝ its rate)
    light: bool = False  # phosphorus and chlorine too (LIGHT_PIGMENTS)
    paints: int = 0  # > 0: a mosaic of this many paints (pigment mixtures) instead of fields
    extra: dict = field(default_factory=dict)


def _peak(energies: np.ndarray, center: float, fwhm: float, gain: float) -> np.ndarray:
    sigma = fwhm / 2.3548
    return gain * np.exp(-0.5 * ((energies - center) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))


def _escape(energy: float) -> float:
    """Si escape probability of a photon of ``energy`` keV (Reed & Ware)."""
    import xraylib as xl

    if energy <= 1.839:
        return 0.0
    r = xl.CS_Total(14, 1.74) / xl.CS_Total(14, energy)
    return 0.5 * 0.047 * (1 - 1 / 10.8) * (1 - r * np.log1p(1 / r))


def _multiplets(z: int, excitation: list[tuple[float, float]], rates: bool = False):
    """Every xraylib line of element ``z``: (family, energy keV, intensity). Intensities are
    fluorescence cross sections at the excitation energies (or radiative rates)."""
    import xraylib as xl

    out = []
    for attr in dir(xl):
        m = re.match(r"^(K|L[123]|M[1-5])([KLMNOPQ][1-7]?)_LINE$", attr)
        if not m:
            continue
        code = getattr(xl, attr)
        try:
            energy = xl.LineEnergy(z, code)
        except ValueError:
            continue
        weight = 0.0
        for e_exc, w in excitation:
            try:
                weight += w * (xl.RadRate(z, code) if rates else
                               xl.CS_FluorLine_Kissel_Cascade(z, code, e_exc))
            except ValueError:
                pass
        if energy > 0 and weight > 0:
            out.append((m.group(1)[0], energy, weight))
    return out


def _templates(spec: DemoSpec) -> tuple[list[str], np.ndarray, dict]:
    """Expected counts per channel of each component per unit intensity (the lines of each
    element as their separate multiplet components, with Si escape peaks)."""
    import xraylib as xl

    e = spec.offset + spec.gain * np.arange(spec.channels)
    names, rows, info = [], [], {}
    res = lambda en: fwhm_kev(en, spec.noise_fwhm_kev, spec.fano)  # noqa: E731

    def add(name: str, row: np.ndarray) -> None:
        names.append(name)
        rows.append(row)

    def lines_row(lines) -> np.ndarray:
        row = np.zeros_like(e)
        for energy, weight in lines:
            row += weight * _line_shape(spec, e, energy, res(energy))
            esc = _escape(energy)
            if esc > 0:
                row += weight * esc * _peak(e, energy - 1.7398, res(energy - 1.74), spec.gain)
        return row

    add("sensor", _peak(e, 0.0, spec.noise_fwhm_kev, spec.gain))
    # Scattered bremsstrahlung: Kramers' law continuum, absorbed at low energy.
    ek = np.clip(e, 1e-3, None)
    kramers = np.clip(spec.tube_kv / ek - 1.0, 0.0, None) * (1 - np.exp(-((ek / 4.0) ** 3)))
    kramers[e <= 0] = 0.0
    add("continuum", kramers / max(kramers.sum(), 1e-12))
    # The tube's lines, scattered: Rayleigh (multiplet by radiative rates) and Compton (Doppler
    # broadened, with a low-energy shoulder from bound electrons).
    anode = anode_lines(spec.anode, spec.tube_kv)
    try:
        tube = [(float(spec.anode), 1.0)]
    except ValueError:
        z_anode = xl.SymbolToAtomicNumber(spec.anode)
        fam = tube_series(spec.anode, spec.tube_kv)  # K (L for W), lower below that edge
        tube = []
        if fam is not None:
            # electron impact ionises the subshells much as photons of ~0.6 x the voltage do
            # (at least just above the shell's edge: 30 kV still excites Rh K, edge 23.2 keV)
            shell = {"K": xl.K_SHELL, "L": xl.L3_SHELL, "M": xl.M5_SHELL}[fam]
            e_exc = min(max(0.6 * spec.tube_kv, 1.1 * xl.EdgeEnergy(z_anode, shell)),
                        spec.tube_kv)
            tube = [(en, w) for f, en, w in _multiplets(z_anode, [(e_exc, 1.0)])
                    if f == fam and en < spec.tube_kv]
            top = max((w for _e, w in tube), default=0.0)
            tube = [(en, w / top) for en, w in tube if w > 1e-3 * top]
    scatter = lines_row(tube)
    for energy, weight in tube:
        compton = float(compton_energy(energy, spec.angle))
        width = np.hypot(res(compton), 2.3548 * 0.012 * compton)
        scatter += 1.6 * weight * (1 - COMPTON_SHOULDER) * _peak(e, compton, width, spec.gain)
        scatter += 1.6 * weight * COMPTON_SHOULDER * _peak(e, compton - 0.3, 2.2 * width, spec.gain)
    for line, (energy, _w) in anode.items():
        info.setdefault("rayleigh_kev", {})[line] = energy
        info.setdefault("compton_kev", {})[line] = float(compton_energy(energy, spec.angle))
    add("scatter", scatter)
    # Elements excited by the anode's main line (by the continuum above it, when their edge is
    # higher), each line weighted by its cross section and its family's strength.
    # (a voltage below every tube line: the continuum near 2/3 of the voltage excites them)
    main = max(tube, key=lambda t: t[1])[0] if tube else 0.67 * spec.tube_kv
    info["excitation_kev"] = main
    layered = {under for under, _over, _c, _t in OVERLAYERS} if spec.layers else set()
    for element in [p[0] for p in _pigments(spec)] + list(HOTSPOT_ELEMENTS):
        lines = _element_lines(spec, element, main)
        if element in layered:  # one row per 1-keV band: absorbed per pixel by the overlayer
            for k in sorted({int(en) for en, _w in lines}):
                add(f"{element}@{k}", lines_row([(en, w) for en, w in lines if int(en) == k]))
        else:
            add(element, lines_row(lines))
    return names, np.asarray(rows, dtype=np.float64), info


def _line_shape(spec: DemoSpec, e: np.ndarray, energy: float, fwhm: float) -> np.ndarray:
    """A line's counts per channel (unit area): the detector's Gaussian, with ``spec.tail`` of
    the counts in an exponential low-energy tail and ``spec.shelf`` in a flat shelf down to
    0 keV (incomplete charge collection; both larger at low energy), computed numerically."""
    gauss = _peak(e, energy, fwhm, spec.gain)
    if spec.tail <= 0 and spec.shelf <= 0:
        return gauss
    rel = min(5.9 / max(energy, 0.5), 4.0)
    tail, shelf = min(spec.tail * rel, 0.5), min(spec.shelf * rel, 0.25)
    out = (1.0 - tail - shelf) * gauss
    below = np.clip(energy - e, 0.0, None)
    if tail > 0:  # the exponential, then the resolution (a discrete convolution)
        expo = np.where(e <= energy, np.exp(-below / spec.tail_kev), 0.0)
        half = int(np.ceil(4 * fwhm / spec.gain))
        kern = _peak(spec.gain * np.arange(-half, half + 1), 0.0, fwhm, spec.gain)
        t = np.convolve(expo, kern, mode="same")
        out += tail * t / max(t.sum(), 1e-300)
    if shelf > 0:
        from scipy.special import erfc

        step = np.where(e > 0, 0.5 * erfc((e - energy) / (np.sqrt(2) * fwhm / 2.3548)), 0.0)
        out += shelf * step / max(step.sum(), 1e-300)
    return out


def _element_lines(spec: DemoSpec, element: str, main: float) -> list[tuple[float, float]]:
    """(energy, relative intensity) of every line of ``element`` the demo plants: cross
    sections at the excitation (the main tube line, the continuum above it)."""
    import xraylib as xl

    z = xl.SymbolToAtomicNumber(element)
    excitation = [(main, 1.0), (min(1.35 * main, spec.tube_kv * 0.8), 0.5),
                  (min(1.9 * main, spec.tube_kv * 0.95), 0.2)]
    if main < 0.4 * spec.tube_kv:  # a low voltage: the continuum does most of the work
        excitation += [(0.5 * spec.tube_kv, 0.6), (0.7 * spec.tube_kv, 0.4),
                       (0.9 * spec.tube_kv, 0.2)]
    lines = [(en, w * SERIES_STRENGTH[f]) for f, en, w in _multiplets(z, excitation)
             if MIN_LINE_KEV < en < spec.tube_kv * 0.95]
    top = max((w for _e, w in lines), default=1.0)
    return [(en, w / top) for en, w in lines if w > 1e-3 * top]


def _pigments(spec: DemoSpec) -> tuple:
    return PIGMENTS + (LIGHT_PIGMENTS if spec.light else ())


def _attenuation(spec: DemoSpec, fields: dict[str, np.ndarray], name: str) -> np.ndarray:
    """The share of a band row (``Pb@10``: Pb's lines in 10-11 keV) that leaves the paint: its
    element lies under an overlayer whose mass thickness follows that pigment's map (``layers``),
    so line ratios (Lβ/Lα, M/L) change pixel by pixel as in a real layer stack."""
    import xraylib as xl

    element, band = name.split("@")
    for under, over, compound, mass_thickness in OVERLAYERS:
        if under == element:
            cover = fields[over] / max(float(fields[over].max()), 1e-9)
            mu = xl.CS_Total_CP(compound, int(band) + 0.5)  # cm²/g at the band's centre
            return np.exp(-mu * mass_thickness * cover).astype(np.float32)
    return np.ones_like(fields[element])


def _smooth_field(rng: np.random.Generator, h: int, w: int, kind: str) -> np.ndarray:
    """A painting-like concentration map in [0, 1]."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros((h, w), np.float32)
    if kind == "flat":
        return 0.8 + 0.2 * np.cos(xx / max(w, 1) * 3.1 + rng.uniform(0, 6)) * np.ones_like(out)
    n = int(rng.integers(3, 7))
    for _ in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        if kind == "blobs":
            r = rng.uniform(0.08, 0.25) * max(h, w)
            out += np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)))
        else:  # brush strokes: long thin gaussians at random angles
            a = rng.uniform(0, np.pi)
            u = (xx - cx) * np.cos(a) + (yy - cy) * np.sin(a)
            v = -(xx - cx) * np.sin(a) + (yy - cy) * np.cos(a)
            length, width = rng.uniform(0.3, 0.8) * max(h, w), rng.uniform(0.03, 0.1) * max(h, w)
            out += np.exp(-0.5 * ((u / length) ** 2 + (v / width) ** 2))
    return np.clip(out / max(out.max(), 1e-6), 0, 1)


GROUND = ("Ar", "Ca", "K")  # under every paint of a mosaic (air, chalk ground)


def _mosaic(spec: DemoSpec, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A painting of ``spec.paints`` paints: regions (jittered Voronoi cells, several per paint)
    each holding one paint, a mixture of one to three pigments in its own proportions, laid on
    thicker or thinner (±15 %). Returns the paint of each pixel and each element's field."""
    h, w = spec.height, spec.width
    pigments = [p for p in _pigments(spec) if p[0] not in GROUND and ":" not in p[1]]
    recipes = []
    for _ in range(spec.paints):  # distinct mixtures: a paint is what sets it apart
        while True:
            chosen = rng.choice(len(pigments), int(rng.integers(1, 4)), replace=False)
            recipe = {pigments[i][0]: float(pigments[i][2] * rng.uniform(0.5, 1.5))
                      for i in chosen}
            if all(set(recipe) != set(r) for r in recipes) or len(recipes) > 40:
                recipes.append(recipe)
                break
    seeds = spec.paints * 2
    cy, cx = rng.uniform(0, h, seeds), rng.uniform(0, w, seeds)
    paint_of_seed = np.concatenate([np.arange(spec.paints),
                                    rng.integers(0, spec.paints, seeds - spec.paints)])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    wobble = (_smooth_field(rng, h, w, "blobs") - 0.5) * 0.15 * max(h, w)
    d = (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2
    labels = paint_of_seed[np.argmin(np.sqrt(d) + wobble[None] * rng.uniform(
        0.5, 1.5, (seeds, 1, 1)), axis=0)]
    thickness = 0.85 + 0.3 * _smooth_field(rng, h, w, "blobs")
    fields: dict[str, np.ndarray] = {}
    for el, _kind, strength in _pigments(spec):
        if el in GROUND:
            fields[el] = strength * _smooth_field(rng, h, w, "flat")
    for p, recipe in enumerate(recipes):
        for el, amount in recipe.items():
            fields.setdefault(el, np.zeros((h, w), np.float32))
            fields[el] += np.where(labels == p, amount * thickness, 0.0).astype(np.float32)
    return labels.astype(np.int16), fields


def _maps(spec: DemoSpec, names: list[str]) -> tuple[np.ndarray, list[dict], np.ndarray | None]:
    """Intensity of every component at every pixel, the planted hot spots and (a mosaic) the
    paint of each pixel."""
    rng = np.random.default_rng([spec.seed, 1])
    h, w = spec.height, spec.width
    maps = np.zeros((len(names), h, w), np.float32)
    maps[names.index("sensor")] = 0.0 if spec.pulser_hz > 0 else 0.02  # the pulser replaces it
    maps[names.index("continuum")] = 0.25
    maps[names.index("scatter")] = 0.06 * (0.9 + 0.2 * rng.random((h, w)))
    fields: dict[str, np.ndarray] = {}
    paints = None
    if spec.paints > 0:
        paints, fields = _mosaic(spec, rng)
    for element, kind, strength in (() if paints is not None else _pigments(spec)):
        if kind.startswith("over:"):  # only where the other pigment lies
            under = fields[kind[5:]]
            blobs = np.clip((_smooth_field(rng, h, w, "blobs") - 0.35) / 0.65, 0, 1)
            field_ = blobs * (under > 0.25 * under.max())
        elif kind.startswith("with:"):  # follows the other pigment, plus a share of its own
            other = fields[kind[5:]]
            field_ = 0.7 * other / max(other.max(), 1e-9) + 0.3 * _smooth_field(rng, h, w, "blobs")
        else:
            field_ = _smooth_field(rng, h, w, kind)
        fields[element] = strength * field_
    for i, name in enumerate(names):
        if name in fields:
            maps[i] = fields[name]
        elif "@" in name and name.split("@")[0] in fields:  # a band under a paint layer
            maps[i] = fields[name.split("@")[0]] * _attenuation(spec, fields, name)
    hotspots = []
    e_max = spec.offset + spec.gain * spec.channels
    candidates = [el for el in HOTSPOT_ELEMENTS if element_lines(el)]
    taken: set[tuple[int, int]] = set()
    for element in candidates:
        if len(hotspots) >= spec.hotspots:
            break
        line, (energy, _) = max(element_lines(element).items(), key=lambda kv: kv[1][1])
        if not (0.5 < energy < min(e_max, spec.tube_kv) * 0.95):
            continue
        while True:
            row, col = int(rng.integers(0, h)), int(rng.integers(0, w))
            if (row, col) not in taken or len(taken) >= h * w:
                break
        taken.add((row, col))
        maps[names.index(element), row, col] = 1.5
        hotspots.append(
            {
                "row": row,
                "col": col,
                "element": element,
                "line": line,
                "energy_kev": energy,
                "channel": (energy - spec.offset) / spec.gain,
            }
        )
    return maps, hotspots, paints


def _pulser(spec: DemoSpec, names: list[str], flat_maps: np.ndarray, templates: np.ndarray):
    """With a pulser: (pulses per pixel, live time per pixel in s, the zero peak's channels,
    their share of its counts). The dead fraction grows with each pixel's count rate."""
    if spec.pulser_hz <= 0:
        return None
    dwell = spec.dwell_ms / 1000.0
    rate = (flat_maps.T @ templates.sum(axis=1).astype(np.float64)) / dwell  # counts per s
    dead = np.clip(1.0 - np.exp(-rate * spec.dead_us * 1e-6), 0.0, 0.8)
    live = dwell * (1.0 - dead)
    e = spec.offset + spec.gain * np.arange(spec.channels)
    sigma = spec.noise_fwhm_kev / 2.3548
    chans = np.flatnonzero(np.abs(e) <= 5 * sigma)
    if chans.size == 0:
        raise ValueError("a pulser needs the axis to hold 0 keV (offset below zero)")
    profile = np.exp(-0.5 * (e[chans] / sigma) ** 2)
    return int(round(spec.pulser_hz * dwell)), live, chans, profile / profile.sum()


def _pileup(spec: DemoSpec, flat_maps: np.ndarray, templates: np.ndarray):
    """With ``pileup``: (the mean pixel's pile-up spectrum, unit area: its spectrum convolved
    with itself on the energy axis; the share of a mean pixel's counts it holds). A pixel's
    pile-up grows with the square of its counts."""
    if spec.pileup <= 0:
        return None
    mean = flat_maps.mean(axis=1) @ templates.astype(np.float64)
    e = spec.offset + spec.gain * np.arange(spec.channels)
    mean[e < 0.5] = 0.0  # the noise peak is no photon
    z = int(round(-spec.offset / spec.gain))  # the channel of 0 keV (energies add from there)
    summed = np.convolve(mean, mean)[z : z + spec.channels] if z >= 0 else np.convolve(
        mean, mean)[: spec.channels]
    summed = np.clip(summed, 0.0, None)
    return (summed / max(summed.sum(), 1e-300)).astype(np.float32), float(spec.pileup)


def generate_scan(prefix: str | Path, spec: DemoSpec | None = None, threads: int = 2) -> dict:
    """Write ``PREFIX.raw``, ``PREFIX.rpl``, ``PREFIX.truth.json`` and ``PREFIX.truth.npz`` (the
    planted element maps, expected counts per pixel); return the truth dict."""
    spec = spec or DemoSpec()
    if min(spec.height, spec.width, spec.channels) < 1:
        raise ValueError("height, width and channels must be at least 1")
    if spec.paints and spec.layers:
        raise ValueError("a mosaic of paints (paints) has no paint-over-paint layers (layers)")
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    names, templates, info = _templates(spec)
    maps, hotspots, paints = _maps(spec, names)
    # Scale so that the average spectrum holds ``counts`` counts.
    mean_total = float((maps.reshape(len(names), -1).mean(axis=1) * templates.sum(axis=1)).sum())
    scale = spec.counts / max(mean_total, 1e-12)
    templates32 = (templates * scale).astype(np.float32)
    flat_maps = maps.reshape(len(names), -1)
    dtype = np.dtype(spec.dtype)
    raw_path, tmp_path = Path(f"{prefix}.raw"), Path(f"{prefix}.raw.partial")
    n_pix, c = spec.height * spec.width, spec.channels
    block = max(1, (2 * 2**20) // (c * 4))  # pixels per block: ~2 MB of float32 (small blocks
    # keep malloc from growing its arenas: RSS stays ~200 MB whatever the scan size)
    item = dtype.itemsize

    pulser = _pulser(spec, names, flat_maps, templates32)
    pileup = _pileup(spec, flat_maps, templates32)

    def work(i: int, fd: int) -> None:
        lo, hi = i * block, min(n_pix, (i + 1) * block)
        expected = flat_maps[:, lo:hi].T @ templates32
        if pileup is not None:  # pairs of photons counted as one at the sum of their energies
            shape, share = pileup
            total = expected.sum(axis=1, keepdims=True)
            expected = expected + share * total**2 / spec.counts * shape[None, :]
        rng = np.random.default_rng([spec.seed, 2, i])
        counts = rng.poisson(expected)
        if pulser is not None:  # each pulse survives the dead time like a photon
            shots, live, chans, profile = pulser
            kept = rng.binomial(shots, live[lo:hi] / (spec.dwell_ms / 1000.0))
            counts[:, chans] += rng.multinomial(kept, profile)
        if dtype.kind == "u":
            counts = np.minimum(counts, np.iinfo(dtype).max)
        counts = counts.astype(dtype)
        if spec.record_by == "vector":
            os.pwrite(fd, counts.tobytes(), lo * c * item)
        else:  # image order: one plane per channel
            planes = np.ascontiguousarray(counts.T)
            for ch in range(c):
                os.pwrite(fd, planes[ch].tobytes(), (ch * n_pix + lo) * item)

    # Positioned writes, not a memmap: dirty mapped pages would count as resident memory.
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, n_pix * c * item)
        with ThreadPoolExecutor(max(1, threads)) as pool:
            list(pool.map(lambda i: work(i, fd), range((n_pix + block - 1) // block)))
    finally:
        os.close(fd)
    os.replace(tmp_path, raw_path)
    energy = EnergyCalibration(spec.offset, spec.gain)
    rpl_text = format_rpl(
        spec.width, spec.height, spec.channels, dtype, spec.record_by, 0, spec.layout, energy
    )
    Path(f"{prefix}.rpl").write_bytes(rpl_text.encode())
    # Truth maps: expected counts per pixel of all lines of each element (escapes included).
    rows = [n for n in names if n not in ("sensor", "continuum", "scatter")]
    elements = list(dict.fromkeys(n.split("@")[0] for n in rows))  # band rows: their element
    per_row = maps[[names.index(n) for n in rows]] * templates32[
        [names.index(n) for n in rows]].sum(axis=1)[:, None, None]
    element_counts = np.zeros((len(elements), spec.height, spec.width), np.float32)
    for n, counts in zip(rows, per_row, strict=True):
        element_counts[elements.index(n.split("@")[0])] += counts
    extra_truth = {} if pulser is None else {"livetime_s": pulser[1].reshape(spec.height,
                                                                            spec.width)}
    if paints is not None:
        extra_truth["materials"] = paints  # which paint each pixel has
    np.savez_compressed(
        f"{prefix}.truth.npz", elements=np.array(elements), maps=element_counts.astype(np.float32),
        **extra_truth,
    )
    truth = {
        **{k: v for k, v in asdict(spec).items() if k != "extra"},
        "element_counts_per_pixel": {
            n: float(m.mean()) for n, m in zip(elements, element_counts, strict=True)
        },
        "offset_kev": spec.offset,
        "gain_kev": spec.gain,
        "components": names,
        "mean_intensity": {n: float(m.mean()) for n, m in zip(names, maps, strict=False)},
        "hotspots": hotspots,
        **info,
    }
    Path(f"{prefix}.truth.json").write_text(json.dumps(truth, indent=2))
    return truth


# Colours of the pigments in a rendered photograph (sRGB): lead white, ochre, vermilion, azurite,
# umber, orpiment, chalk ground …; elements not listed leave the ground's colour.
PIGMENT_COLORS = {"Pb": (235, 232, 222), "Fe": (190, 130, 60), "Hg": (200, 40, 35),
                  "Cu": (40, 90, 170), "Mn": (95, 70, 50), "As": (230, 190, 60),
                  "S": (220, 210, 120), "P": (40, 40, 40), "Cl": (160, 200, 160)}
GROUND_COLOR = (214, 204, 180)


def photo_transform(scale: float = 4.0, angle_deg: float = 3.0, shift=(60.0, 40.0),
                    perspective: float = 0.0) -> np.ndarray:
    """A scan → photo matrix: scale, a rotation, a shift and optionally a mild perspective."""
    a = np.deg2rad(angle_deg)
    m = np.array([[scale * np.cos(a), -scale * np.sin(a), shift[0]],
                  [scale * np.sin(a), scale * np.cos(a), shift[1]],
                  [perspective, 0.3 * perspective, 1.0]])
    return m


def _painted_rgb(elements: list[str], maps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The painting as a person sees it (scan grid, RGB 0-255): the pigments' colours laid over
    the ground, with brush texture, plus an underdrawing in carbon black that XRF cannot see."""
    from scipy.ndimage import gaussian_filter

    h, w = maps.shape[1:]
    rgb = np.ones((h, w, 3), np.float32) * np.array(GROUND_COLOR, np.float32)
    for el, m in zip(elements, maps, strict=True):
        if el not in PIGMENT_COLORS:
            continue
        cover = np.clip(m / max(float(np.percentile(m, 99)), 1e-9), 0, 1)[..., None] * 0.8
        rgb = rgb * (1 - cover) + cover * np.array(PIGMENT_COLORS[el], np.float32)
    strokes = gaussian_filter(rng.normal(0, 1, (h, w)), (0.6, 2.5))  # brush marks along rows
    rgb *= (1 + 0.06 * strokes / max(float(strokes.std()), 1e-9))[..., None]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(int(rng.integers(2, 5))):  # charcoal lines: seen in the photo only
        y0, x0, a = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0, np.pi)
        bend = rng.uniform(-0.01, 0.01)
        u = (xx - x0) * np.cos(a) + (yy - y0) * np.sin(a)
        v = -(xx - x0) * np.sin(a) + (yy - y0) * np.cos(a) - bend * u**2
        line = np.exp(-0.5 * (v / 0.6) ** 2) * (np.abs(u) < rng.uniform(0.2, 0.5) * max(h, w))
        rgb *= (1 - 0.6 * line)[..., None]
    return rgb


def photograph(elements: list[str], maps: np.ndarray, matrix: np.ndarray,
               size: tuple[int, int], seed: int = 0, margin: float = 0.3,
               rows: int = 256) -> np.ndarray:
    """The painting whose element maps are ``maps`` as photographed (RGB uint8 of ``size``):
    its pigments' colours with brush texture, canvas weave, a charcoal underdrawing that XRF does
    not see, varnish, uneven light and sensor noise, seen through ``matrix`` (scan (col, row) →
    photo (x, y)). The painting runs on past the scanned area by ``margin`` of its size (then
    frame and wall), as a scan seldom covers a whole painting. Rendered in strips of ``rows``."""
    from scipy.ndimage import map_coordinates, zoom

    h, w = maps.shape[1:]
    rng = np.random.default_rng(seed)
    rgb = _painted_rgb(elements, maps, rng)
    other = zoom(rgb.transpose(1, 0, 2), (h / w, w / h, 1), order=1)
    ph, pw = size
    inv = np.linalg.inv(matrix)
    cast = np.array([1.0, 0.96, 0.84], np.float32)  # a yellowed varnish
    light = rng.uniform(-0.15, 0.15, 2)
    out = np.empty((ph, pw, 3), np.uint8)
    xs = np.arange(pw, dtype=np.float64)
    for r0 in range(0, ph, rows):
        yy, xx = np.meshgrid(np.arange(r0, min(r0 + rows, ph), dtype=np.float64), xs,
                             indexing="ij")
        src = np.c_[xx.ravel(), yy.ravel(), np.ones(xx.size)] @ inv.T
        col, row = src[:, 0] / src[:, 2], src[:, 1] / src[:, 2]
        painted = ((col >= -margin * w) & (col <= (1 + margin) * w)
                   & (row >= -margin * h) & (row <= (1 + margin) * h))
        # past the scan the painting goes on with other paint: here the scanned part turned
        # over (transposed) and repeated, which no rotation of the scan matches
        out_by = np.hypot(np.clip(-col, 0, None) + np.clip(col - (w - 1), 0, None),
                          np.clip(-row, 0, None) + np.clip(row - (h - 1), 0, None))
        inner = np.clip(1 - out_by, 0, 1)
        strip = np.empty((col.size, 3), np.float32)
        for c in range(3):
            near = map_coordinates(rgb[..., c], [row, col], order=1, mode="nearest")
            far = map_coordinates(other[..., c], [row, col], order=1, mode="grid-wrap")
            strip[:, c] = inner * near + (1 - inner) * far
        weave = 1 + 0.03 * np.sin(2 * np.pi * col / 0.7) * np.sin(2 * np.pi * row / 0.7)
        strip *= weave[:, None] * cast
        strip[~painted] = (120, 110, 95)  # the frame and the wall
        nx, ny = xx.ravel() / pw - 0.5, yy.ravel() / ph - 0.5
        strip *= (1 + light[0] * nx + light[1] * ny - 0.25 * (nx**2 + ny**2))[:, None]
        strip += rng.normal(0, 5, strip.shape)
        out[r0 : r0 + rows] = np.clip(strip, 0, 255).astype(np.uint8).reshape(*yy.shape, 3)
    return out


def planted_maps(spec: DemoSpec) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """The element maps (relative amounts) and paints a scan of ``spec`` would plant, without
    writing the scan: for what works on maps alone (registration, materials) at any size."""
    names = _templates(spec)[0]
    maps, _hotspots, paints = _maps(spec, names)
    rows = [i for i, n in enumerate(names) if n not in ("sensor", "continuum", "scatter")]
    return [names[i] for i in rows], maps[rows], paints


def render_photo(prefix: str | Path, matrix: np.ndarray, size: tuple[int, int],
                 points: int = 8, point_noise_px: float = 0.5, seed: int = 0,
                 margin: float = 0.3) -> Path:
    """``PREFIX.photo.jpg``: the planted painting (``PREFIX.truth.npz``) as :func:`photograph`
    sees it, JPEG-compressed; ``PREFIX.points.csv``: ``points`` control-point pairs (photo
    positions with noise); ``PREFIX.photo.json``: the true matrix."""
    import json

    from PIL import Image

    prefix = Path(prefix)
    truth = np.load(f"{prefix}.truth.npz")
    elements, maps = [str(e) for e in truth["elements"]], truth["maps"]
    h, w = maps.shape[1:]
    out = photograph(elements, maps, matrix, size, seed, margin)
    ph, pw = size
    rng = np.random.default_rng([seed, 7])
    path = Path(f"{prefix}.photo.jpg")
    Image.fromarray(out).save(path, quality=85)
    picks = np.c_[rng.uniform(0, w - 1, points), rng.uniform(0, h - 1, points)]
    photo_xy = (np.c_[picks, np.ones(points)] @ matrix.T)
    photo_xy = photo_xy[:, :2] / photo_xy[:, 2:3] + rng.normal(0, point_noise_px, (points, 2))
    lines = ["scan_col,scan_row,photo_x,photo_y"] + [
        f"{c:.2f},{r:.2f},{x:.2f},{y:.2f}" for (c, r), (x, y) in zip(picks, photo_xy,
                                                                      strict=True)]
    Path(f"{prefix}.points.csv").write_text("\n".join(lines) + "\n")
    Path(f"{prefix}.photo.json").write_text(json.dumps(
        {"photo": path.name, "size": [ph, pw], "matrix": np.asarray(matrix).tolist(),
         "maps": "scan (col, row) pixel centres → photo (x, y) pixels"}, indent=1))
    return path
