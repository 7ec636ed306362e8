"""Element maps: speed and accuracy of maxrf's per-pixel fit against the planted truth, side by
side with background-corrected ROI sums and PyMca5's FastXRFLinearFit on the same generated stack,
measured in the same run. Prints a table and writes benchmarks/results-elementmaps.json.

    python benchmarks/elementmaps.py [--size 256] [--counts 4000] [--no-pymca]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def prepare_stack(folder: Path, size: int, counts: float) -> Path:
    from maxrf.demo import DemoSpec, generate_scan
    from maxrf.pipeline import steps
    from maxrf.pipeline.convert import convert

    path = folder / "bench.datastack"
    if not path.exists():
        generate_scan(folder / "bench", DemoSpec(height=size, width=size, seed=11, counts=counts))
        convert(folder / "bench.raw", progress=False)
        steps.calibrate_layers(path, "Rh")
        steps.hotmax_layers(path)
    return path


def run_maxrf(path: Path) -> dict:
    """maxrf's element-map step in a fresh process (its own peak RSS)."""
    code = (
        "import json,resource,time,sys;from maxrf.pipeline import steps;"
        "from maxrf.datastack import DataStack;t=time.time();"
        "steps.elementmap_layers(sys.argv[1], progress=False);"
        "d=time.time()-t;a=DataStack(sys.argv[1]).attrs('maxrf_elementmaps');"
        "print(json.dumps({'seconds':d,'fit_spectra_per_s':a['maxrf']['spectra_per_s'],"
        "'rss_mb':resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024,"
        "'elements':a['elements']}))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


MAXRF4U = """
import json, sys, time
import numpy as np
import maxrf4u
import maxrf4u.peakmaps as pm

path, out, elements = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
store = {}  # its layers stay in memory: nothing is appended to our datastack
maxrf4u.append = lambda arr, name, f: store.__setitem__(name, np.asarray(arr))
read = maxrf4u.DataStack.read
maxrf4u.DataStack.read = lambda self, name, *a, **k: (
    store[name] if name in store else read(self, name, *a, **k))
t = time.time()
pm.compute_nmf_peakmaps(path, auto_write=True)
els, maps = pm.compute_nmf_element_maps(path, elements, auto_write=True)
seconds = time.time() - t
np.save(out, np.asarray(maps, dtype=np.float32))
print(json.dumps({"elements": [str(e) for e in els], "seconds": seconds}))
"""


def maxrf4u_maps(python: str, path: Path, elements: list[str]) -> tuple[dict, float]:
    """maxrf4u 0.1.27's own NMF element maps (``compute_nmf_peakmaps`` then
    ``compute_nmf_element_maps``, its default 25 keV excitation) computed on our datastack in its
    own environment (``make compat``), elements given by hand as its users do."""
    from maxrf.datastack import DataStack
    from maxrf.pipeline import steps

    if "hotmax_baselines" not in DataStack(path):
        steps.noise_layers(path)  # its Gaussians need the hotmax baselines
    out = path.with_suffix(".maxrf4u.npy")
    res = subprocess.run([python, "-c", MAXRF4U, str(path), str(out), ",".join(elements)],
                         capture_output=True, text=True, cwd=ROOT, timeout=3600)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    info = json.loads(res.stdout.strip().splitlines()[-1])
    maps = np.load(out)
    return dict(zip(info["elements"], maps, strict=True)), info["seconds"]


def scaled_to(truth: np.ndarray, m: np.ndarray) -> np.ndarray:
    """An arbitrary-unit map scaled to counts by least squares on the 4 × 4-binned maps (the
    most favourable scale for it)."""
    from maxrf.pipeline.elementmaps import binned

    bt, bm = binned(truth), binned(m)
    return m * float((bt * bm).sum() / max(float((bm * bm).sum()), 1e-30))


def pymca_maps(path: Path, elements: list[str]) -> tuple[dict[str, np.ndarray], float]:
    """PyMca5's FastXRFLinearFit on the raw counts, configured from its Steel.cfg with our
    calibration, tube and elements (K, L or M families as in range)."""
    import PyMca5
    from PyMca5.PyMcaIO import ConfigDict
    from PyMca5.PyMcaPhysics.xrf import FastXRFLinearFit

    from maxrf.datastack import DataStack

    ds = DataStack(path)
    raw = ds.read("maxrf_raw")
    energies = ds.read("maxrf_energies")
    cfg = ConfigDict.ConfigDict()
    cfg.read(os.path.join(os.path.dirname(PyMca5.__file__), "PyMcaData", "Steel.cfg"))
    cfg["detector"]["zero"], cfg["detector"]["gain"] = float(energies[0]), float(
        energies[1] - energies[0])
    cfg["detector"]["noise"], cfg["detector"]["fano"] = 0.0715 / 2.3548 * 2.3548, 0.115
    cfg["fit"]["energy"] = [20.216] + ["None"] * (len(cfg["fit"]["energy"]) - 1)
    cfg["fit"]["xmin"] = int(np.searchsorted(energies, 1.0))
    cfg["fit"]["xmax"] = int(np.searchsorted(energies, 25.0))
    cfg["fit"]["stripflag"], cfg["fit"]["stripalgorithm"] = 1, 1  # SNIP background
    cfg["fit"]["snipwidth"] = 30
    cfg["fit"]["scatterflag"] = 1
    cfg["attenuators"] = {"Matrix": [0, "MULTILAYER", 0.0, 0.0, 45.0, 45.0, 0, 90.0]}
    peaks = {}
    for el in elements:
        fams = [f for f, e in (("K", 1), ("L", 1), ("M", 1)) if _in_range(el, f)]
        if fams:
            peaks[el] = fams if len(fams) > 1 else fams[0]
    cfg["peaks"] = peaks
    fitter = FastXRFLinearFit.FastXRFLinearFit()
    fitter.setFitConfiguration(cfg)
    t = time.time()
    out = fitter.fitMultipleSpectra(y=raw.astype(np.float32), weight=0, refit=True,
                                    concentrations=False, save=False)
    seconds = time.time() - t
    maps = {}
    names = out["parameter_names"] if "parameter_names" in out else out.labels("parameters")
    params = out["parameters"]
    for el in elements:
        rows = [i for i, n in enumerate(names) if n.split()[0] == el]
        if rows:
            maps[el] = np.sum([params[i] for i in rows], axis=0)
    return maps, seconds


def _in_range(el: str, family: str) -> bool:
    from maxrf.xrf.lines import line_components

    return any(x.family[0] == family and 1.0 < x.energy_kev < 25.0 for x in line_components(el))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--counts", type=float, default=4000.0)
    ap.add_argument("--folder", default=str(ROOT / "benchmarks" / "data"))
    ap.add_argument("--no-pymca", action="store_true")
    ap.add_argument("--out", help="results file (default benchmarks/results-elementmaps.json)")
    ap.add_argument("--maxrf4u", metavar="PYTHON",
                    help="also run maxrf4u's NMF element maps with this Python (make compat: "
                         ".venv-maxrf4u/bin/python)")
    args = ap.parse_args()
    from maxrf.datastack import DataStack
    from maxrf.pipeline.elementmaps import accuracy, crosstalk, roi_maps

    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = prepare_stack(folder, args.size, args.counts)
    t = np.load(folder / "bench.truth.npz")
    truth = dict(zip([str(x) for x in t["elements"]], t["maps"], strict=True))
    mx = run_maxrf(path)
    ds = DataStack(path)
    elements = ds.attrs("maxrf_elementmaps")["elements"]
    fit = dict(zip(elements, ds.read("maxrf_elementmaps"), strict=True))
    t0 = time.time()
    roi = dict(zip(elements, roi_maps(path, elements), strict=True))
    roi_s = time.time() - t0
    pym, pym_s = ({}, float("nan"))
    if not args.no_pymca:
        try:
            pym, pym_s = pymca_maps(path, elements)
        except Exception as exc:  # report, keep the rest of the benchmark
            print(f"PyMca5 FastXRFLinearFit failed: {exc!r}")
    m4u, m4u_s = ({}, float("nan"))
    if args.maxrf4u:
        planted = [el for el in truth if truth[el].mean() >= 5]
        try:
            m4u, m4u_s = maxrf4u_maps(args.maxrf4u, path, planted)
        except Exception as exc:
            print(f"maxrf4u NMF element maps failed: {exc!r}")
    n = args.size * args.size
    rows = {}
    print(f"{args.size} x {args.size} x 4096, {args.counts:g} counts/spectrum")
    print(f"{'el':<3} {'truth':>8} | {'maxrf r':>7} {'rmse':>6} {'total':>6} | {'ROI r':>6} "
          f"{'rmse':>6} | {'PyMca r':>7} {'rmse':>6} {'total':>6}")
    for el in elements:
        if el not in truth:
            continue
        a, b = accuracy(fit[el], truth[el]), accuracy(roi[el], truth[el])
        c = accuracy(pym[el], truth[el]) if el in pym else None
        rows[el] = {"maxrf": a, "roi": b, "pymca": c}
        if el in m4u:
            rows[el]["maxrf4u_scaled"] = accuracy(scaled_to(truth[el], m4u[el]), truth[el])
        pc = (f"{c['corr']:7.3f} {c['rel_rmse']:6.3f} {c['total_ratio']:6.3f}" if c else
              f"{'-':>7} {'-':>6} {'-':>6}")
        print(f"{el:<3} {a['truth']:8.2f} | {a['corr']:7.3f} {a['rel_rmse']:6.3f} "
              f"{a['total_ratio']:6.3f} | {b['corr']:6.3f} {b['rel_rmse']:6.3f} | {pc}")
    xt = {"maxrf": crosstalk(fit, truth), "roi": crosstalk(roi, truth),
          "pymca": crosstalk(pym, truth) if "As" in pym and "Pb" in pym else None}
    print(f"As cross-talk in lead-only pixels: maxrf {100 * xt['maxrf']:.2f} %, ROI "
          f"{100 * xt['roi']:.1f} %" + (f", PyMca {100 * xt['pymca']:.2f} %" if xt["pymca"]
                                        else ""))
    if m4u:
        print(f"maxrf4u 0.1.27 NMF element maps (arbitrary units, scaled to counts by the "
              f"best factor): {n / m4u_s:.0f} spectra/s")
        print(f"{'el':<3} {'truth':>8} | {'maxrf r':>7} {'rmse':>6} | {'maxrf4u r':>9} {'rmse':>6}")
        for el, r in rows.items():
            if "maxrf4u_scaled" in r:
                a, d = r["maxrf"], r["maxrf4u_scaled"]
                print(f"{el:<3} {a['truth']:8.2f} | {a['corr']:7.3f} {a['rel_rmse']:6.3f} | "
                      f"{d['corr']:9.3f} {d['rel_rmse']:6.3f}")
        if "As" in m4u and "Pb" in m4u:
            xt["maxrf4u"] = crosstalk(m4u, truth)
            print(f"As cross-talk in lead-only pixels: maxrf4u {100 * xt['maxrf4u']:.2f} %")
    speed = {"maxrf_fit_spectra_per_s": mx["fit_spectra_per_s"],
             "maxrf_step_s": mx["seconds"], "maxrf_rss_mb": mx["rss_mb"],
             "roi_spectra_per_s": n / roi_s,
             "pymca_spectra_per_s": n / pym_s if pym else None,
             "maxrf4u_spectra_per_s": n / m4u_s if m4u else None}
    print(f"speed: maxrf fit {mx['fit_spectra_per_s']:.0f} spectra/s (whole step "
          f"{mx['seconds']:.1f} s, peak RSS {mx['rss_mb']:.0f} MB); ROI {n / roi_s:.0f}/s"
          + (f"; PyMca FastXRFLinearFit {n / pym_s:.0f}/s, maxrf "
             f"{mx['fit_spectra_per_s'] / (n / pym_s):.1f}x" if pym else ""))
    result = {"size": args.size, "counts": args.counts, "elements": elements, "rows": rows,
              "crosstalk": xt, "speed": speed, "rss_self_mb":
              resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    (Path(args.out) if args.out else ROOT / "benchmarks" / "results-elementmaps.json").write_text(
        json.dumps(result, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
