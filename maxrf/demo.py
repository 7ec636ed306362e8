"""Synthetic MA-XRF scans with realistic physics and their ground truth, streamed to disk.

Each pixel's expected spectrum is a sum of components (detector noise peak at 0 keV, scattered
tube continuum, anode Rayleigh and Compton lines, element lines at the detector's resolution),
weighted by smooth "pigment" maps plus a few single-pixel hot spots; counts are Poisson draws.
Deterministic per seed; memory stays bounded (a few hundred MB) whatever the scan size.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .lines import anode_lines, compton_energy, element_lines
from .rpl import EnergyCalibration, format_rpl

# Element, region shape and relative strength of the "paint layers" of a demo painting.
PIGMENTS = (
    ("Ar", "flat", 0.02),  # air between head and painting
    ("Ca", "flat", 0.10),  # chalk ground
    ("Pb", "strokes", 0.35),  # lead white
    ("Fe", "blobs", 0.25),  # ochre
    ("Hg", "blobs", 0.20),  # vermilion
    ("Cu", "strokes", 0.15),  # azurite / verdigris
    ("Mn", "blobs", 0.05),  # umber
    ("K", "flat", 0.03),
)
SERIES_STRENGTH = {"K": 1.0, "L": 1.0, "M": 0.15}  # M lines: weak, absorbed on the way
HOTSPOT_ELEMENTS = ("Sr", "Au", "Ti", "Zn", "Co", "Sn")


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
    extra: dict = field(default_factory=dict)


def fwhm_kev(energy_kev: np.ndarray | float, noise_fwhm_kev: float = 0.0715) -> np.ndarray:
    """Silicon drift detector resolution: electronic noise plus Fano statistics."""
    fano = 2.3548**2 * 0.00385 * 0.115 * np.maximum(energy_kev, 0.0)
    return np.sqrt(noise_fwhm_kev**2 + fano)


def _peak(energies: np.ndarray, center: float, fwhm: float, gain: float) -> np.ndarray:
    sigma = fwhm / 2.3548
    return gain * np.exp(-0.5 * ((energies - center) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))


def _templates(spec: DemoSpec) -> tuple[list[str], np.ndarray, dict]:
    """Expected counts per channel of each component per unit intensity."""
    e = spec.offset + spec.gain * np.arange(spec.channels)
    names, rows, info = [], [], {}

    def add(name: str, row: np.ndarray) -> None:
        names.append(name)
        rows.append(row)

    add("sensor", _peak(e, 0.0, spec.noise_fwhm_kev, spec.gain))
    # Scattered bremsstrahlung: Kramers' law continuum, absorbed at low energy.
    ek = np.clip(e, 1e-3, None)
    kramers = np.clip(spec.tube_kv / ek - 1.0, 0.0, None) * (1 - np.exp(-((ek / 4.0) ** 3)))
    kramers[e <= 0] = 0.0
    add("continuum", kramers / max(kramers.sum(), 1e-12))
    scatter = np.zeros_like(e)
    lines = anode_lines(spec.anode)
    for line, (energy, weight) in lines.items():
        compton = float(compton_energy(energy, spec.angle))
        scatter += weight * _peak(e, energy, fwhm_kev(energy, spec.noise_fwhm_kev), spec.gain)
        # Compton peaks are broadened by the electrons' momentum (Doppler) and the solid angle.
        scatter += (
            1.6
            * weight
            * _peak(e, compton, 3.0 * fwhm_kev(compton, spec.noise_fwhm_kev), spec.gain)
        )
        info.setdefault("rayleigh_kev", {})[line] = energy
        info.setdefault("compton_kev", {})[line] = compton
    add("scatter", scatter)
    for element in [p[0] for p in PIGMENTS] + list(HOTSPOT_ELEMENTS):
        row = np.zeros_like(e)
        for line, (energy, weight) in element_lines(element).items():
            if 1.0 < energy < spec.tube_kv * 0.9:  # air and the detector window absorb < 1 keV
                w = weight * SERIES_STRENGTH[line[0]]
                row += w * _peak(e, energy, fwhm_kev(energy, spec.noise_fwhm_kev), spec.gain)
        add(element, row)
    return names, np.asarray(rows, dtype=np.float64), info


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


def _maps(spec: DemoSpec, names: list[str]) -> tuple[np.ndarray, list[dict]]:
    """Intensity of every component at every pixel, plus the planted hot spots."""
    rng = np.random.default_rng([spec.seed, 1])
    h, w = spec.height, spec.width
    maps = np.zeros((len(names), h, w), np.float32)
    maps[names.index("sensor")] = 0.02
    maps[names.index("continuum")] = 0.25
    maps[names.index("scatter")] = 0.06 * (0.9 + 0.2 * rng.random((h, w)))
    for element, kind, strength in PIGMENTS:
        maps[names.index(element)] = strength * _smooth_field(rng, h, w, kind)
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
    return maps, hotspots


def generate_scan(prefix: str | Path, spec: DemoSpec | None = None, threads: int = 2) -> dict:
    """Write ``PREFIX.raw``, ``PREFIX.rpl`` and ``PREFIX.truth.json``; return the truth dict."""
    spec = spec or DemoSpec()
    if min(spec.height, spec.width, spec.channels) < 1:
        raise ValueError("height, width and channels must be at least 1")
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    names, templates, info = _templates(spec)
    maps, hotspots = _maps(spec, names)
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

    def work(i: int, fd: int) -> None:
        lo, hi = i * block, min(n_pix, (i + 1) * block)
        expected = flat_maps[:, lo:hi].T @ templates32
        counts = np.random.default_rng([spec.seed, 2, i]).poisson(expected)
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
    truth = {
        **{k: v for k, v in asdict(spec).items() if k != "extra"},
        "offset_kev": spec.offset,
        "gain_kev": spec.gain,
        "components": names,
        "mean_intensity": {n: float(m.mean()) for n, m in zip(names, maps, strict=False)},
        "hotspots": hotspots,
        **info,
    }
    Path(f"{prefix}.truth.json").write_text(json.dumps(truth, indent=2))
    return truth
