"""maxrf against PyMca's full fit (ClassMcaTheory) on the real spectra PyMca5 ships.

For each spectrum: PyMca fits it with a configuration (Steel: PyMca's own Steel.cfg; XRFSpectrum:
Steel.cfg changed to the set-up that spectrum's own header gives: a thin standard in 100 µm of
water, 0.1° in, 90° out, 8 µm Be window, 450 µm Si, 2 mm of air, the zero and gain free, and a
wide element list); maxrf runs its chain on a
4 x 4 scan of the spectrum (calibration, proposals, per-pixel maps). The table lists every
element PyMca finds at >= 3 sigma, whether maxrf proposes it, and both net counts (PyMca: the sum
of the element's group areas; maxrf: its map's total). Usage: python benchmarks/real_spectra.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import write_scan  # noqa: E402
from real_spectra import pymca_data, steel_spectrum, xrf_reference_axis, xrf_spectrum  # noqa: E402

XRF_ELEMENTS = ("Ar", "K", "Ca", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge",
                "As", "Se", "Br", "Rb", "Sr", "Y", "Hg", "Tl", "Pb", "Bi")


def pymca_fit(y: np.ndarray, spectrum: str) -> dict[str, tuple[float, float]]:
    """``{element: (net counts, sigma)}`` from PyMca's full fit."""
    from PyMca5.PyMcaIO import ConfigDict
    from PyMca5.PyMcaPhysics.xrf import ClassMcaTheory

    cfg = ConfigDict.ConfigDict()
    cfg.read(str(pymca_data("Steel.cfg")))
    if spectrum == "XRFSpectrum":  # the set-up its own header gives: a thin standard
        offset, gain = xrf_reference_axis()
        cfg["fit"]["energy"][0] = 17.44
        cfg["detector"]["zero"], cfg["detector"]["gain"] = offset, gain
        cfg["detector"]["fixedzero"], cfg["detector"]["fixedgain"] = 0, 0  # PyMca's own axis
        cfg["materials"]["Water"] = {"Comment": "Water", "CompoundFraction": [1.0],
                                     "CompoundList": ["H2O1"], "Density": 1.0}
        att = cfg["attenuators"]
        att["Matrix"] = [1, "Water", 1.0, 0.01, 0.1, 90.0, 0, 90.1]  # 100 µm, 0.1° in, 90° out
        att["atmosphere"] = [1, "Air", 0.0012048, 0.2, 1.0]  # 2 mm of air
        att["window"] = [1, "Be1", 1.848, 0.0008, 1.0]  # 8 µm Be
        att["Detector"] = [1, "Si1", 2.33, 0.045, 1.0]  # 450 µm Si
        att["BeamFilter0"] = [0, "-", 0.0, 0.0, 1.0]
        cfg["fit"]["xmin"], cfg["fit"]["xmax"] = 300, 3700
        cfg["peaks"] = {el: "K" if el not in ("Hg", "Tl", "Pb", "Bi") else ["L", "M"]
                        for el in XRF_ELEMENTS}
    fit = ClassMcaTheory.McaTheory()
    fit.configure(cfg)
    x = np.arange(y.size, dtype=float)
    fit.setData(x=x, y=y, xmin=cfg["fit"]["xmin"], xmax=cfg["fit"]["xmax"])
    fit.estimate()
    _fr, res = fit.startfit(digest=1)
    out: dict[str, list[float]] = {}
    for group in res["groups"]:
        el = group.split()[0]
        if el in ("Scatter",):
            continue
        area, sigma = out.get(el, [0.0, 0.0])
        out[el] = [area + res[group]["fitarea"], float(np.hypot(sigma, res[group]["sigmaarea"]))]
    return {el: (a, s) for el, (a, s) in out.items()}


def maxrf_fit(y: np.ndarray, anode: str, folder: Path) -> tuple[dict[str, float], dict]:
    """``{element: net counts of the spectrum}`` from maxrf's chain on a 4 x 4 scan of it."""
    from maxrf.datastack import DataStack
    from maxrf.pipeline import steps
    from maxrf.pipeline.convert import convert

    raw = write_scan(folder / "s", np.broadcast_to(y, (4, 4, y.size)).copy(), dtype="<u4")
    convert(raw, progress=False)
    path = folder / "s.datastack"
    steps.calibrate_layers(path, anode)
    steps.hotmax_layers(path)
    steps.elementmap_layers(path, anode=anode, progress=False)
    ds = DataStack(path)
    maps = ds.read("maxrf_elementmaps")
    attrs = ds.attrs("maxrf_elementmaps")
    counts = {el: float(m.mean()) for el, m in zip(attrs["elements"], maps, strict=True)}
    return counts, ds.attrs("maxrf_energies")["calibration"]


def bruker_m6() -> tuple[np.ndarray, dict[str, float]]:
    """The real M6 Jetstream spectrum (rosettasciio's test ``.spx``) and Bruker's own fit of it
    (``{element: net counts}`` from the file's results)."""
    import warnings

    import xraylib
    from rsciio.bruker import file_reader

    path = Path(__file__).resolve().parents[1] / "tests" / "data" / "rosettasciio"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (sig,) = file_reader(str(path / "bruker_m6_jetstream_file_example.spx"))
    results = sig["original_metadata"]["Results"]["Result"]
    vendor = {xraylib.AtomicNumberToSymbol(r["Atom"]): float(r["NetIntens"]) for r in results
              if r.get("NetIntens") and r["Atom"] != 45}  # 45: the Rh anode's scatter
    return np.asarray(sig["data"], dtype=np.float64), vendor


def m6_case() -> None:
    """maxrf on the real M6 spectrum against Bruker's own net intensities (no sigmas given)."""
    y, vendor = bruker_m6()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ours, cal = maxrf_fit(y, "Rh", Path(tmp))
    print(f"\nBruker M6 Jetstream (.spx, Rh 50 kV): {int(y.sum())} counts; maxrf chain "
          f"{time.perf_counter() - t0:.1f} s; maxrf axis {cal['method']}")
    print(f"{'element':<8}{'Bruker net':>12}{'maxrf':>10}{'ratio':>8}  proposed")
    for el in sorted(vendor, key=lambda e: -vendor[e]):
        mine = ours.get(el)
        ratio = f"{mine / vendor[el]:.2f}" if mine else "-"
        print(f"{el:<8}{vendor[el]:12.0f}{(mine or 0):10.0f}{ratio:>8}  "
              f"{'yes' if mine is not None else 'NO'}")
    print(f"maxrf only: {', '.join(sorted(set(ours) - set(vendor))) or 'none'}")


def main() -> None:
    cases = [("Steel", steel_spectrum(), "16.0"), ("XRFSpectrum", xrf_spectrum(), "17.5")]
    for name, y, anode in cases:
        t0 = time.perf_counter()
        ref = pymca_fit(y, name)
        t1 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            ours, cal = maxrf_fit(y, anode, Path(tmp))
        t2 = time.perf_counter()
        print(f"\n{name}: {int(y.sum())} counts; PyMca full fit {t1 - t0:.1f} s, maxrf chain "
              f"{t2 - t1:.1f} s; maxrf axis {cal['method']} (confidence {cal['confidence']})")
        print(f"{'element':<8}{'PyMca counts':>14}{'sigma':>9}{'maxrf':>10}{'ratio':>8}  proposed")
        found = sorted(ref, key=lambda el: -ref[el][0])
        total = sum(a for a, _s in ref.values())  # shares of the fluorescence counts
        for el in found:
            area, sigma = ref[el]
            if area < 3 * sigma:
                continue
            mine = ours.get(el)
            ratio = f"{mine / area:.2f}" if mine else "-"
            share = area / total
            print(f"{el:<8}{area:14.0f}{sigma:9.0f}{(mine or 0):10.0f}{ratio:>8}  "
                  f"{'yes' if mine is not None else 'NO'}{'' if share >= 0.005 else ' (<0.5 %)'}")
        extra = sorted(set(ours) - {el for el in ref if ref[el][0] >= 3 * ref[el][1]})
        print(f"maxrf only: {', '.join(extra) or 'none'}")
    m6_case()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
