"""Viewer speed: every API call of ``maxrf view`` on generated scans of several sizes, timed over
HTTP against a real server (p50 / p95 of repeated calls with varied parameters), plus first
paint (page + info + first image). Prints a table; writes benchmarks/results-view.json.

    python benchmarks/view.py [--sizes 512 768] [--full] [--repeat 12]

``--full`` adds the real Bruker size, 1692 × 1592 × 4096 (≈ 22 GB of .raw, ≈ 40 GB of disk).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def prepare(folder: Path, height: int, width: int) -> tuple[Path, float]:
    """Generate, convert, calibrate, hotmax, bands and element maps (untimed set-up, but the
    band step's own time is returned)."""
    from maxrf.datastack import DataStack
    from maxrf.demo import DemoSpec, generate_scan
    from maxrf.pipeline import steps
    from maxrf.pipeline.bands import band_layers
    from maxrf.pipeline.convert import convert

    path = folder / "view.datastack"
    if not path.exists():
        generate_scan(folder / "view", DemoSpec(height=height, width=width, seed=4))
        convert(folder / "view.raw", progress=False)
        (folder / "view.raw").unlink()  # the datastack holds the counts; free the disk
        steps.calibrate_layers(path, "Rh")
        steps.hotmax_layers(path)
    bands_s = float("nan")
    ds = DataStack(path)
    if "maxrf_bandcumsum" not in ds:
        t = time.time()
        band_layers(path, progress=False)
        bands_s = time.time() - t
    if "maxrf_elementmaps" not in DataStack(path):
        steps.elementmap_layers(path, progress=False)
    return path, bands_s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[float, int]:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as r:
        n = len(r.read())
    return time.perf_counter() - t, n


def measure(path: Path, repeat: int) -> dict:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "maxrf.cli", "view", str(path),
                             "--no-browser", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.perf_counter()
        while True:
            try:
                get(base + "/api/info")
                break
            except OSError:
                if time.perf_counter() - t0 > 120:
                    raise
                time.sleep(0.1)
        ready = time.perf_counter() - t0
        info = json.loads(urllib.request.urlopen(base + "/api/info").read())
        h, w = info["height"], info["width"]
        els = info["elements"]
        rng = np.random.default_rng(0)
        t = time.perf_counter()
        get(base + "/")
        get(base + "/viewer.js")
        get(base + "/api/info")
        for el in els[:3]:  # the page colours the maps itself from their values
            get(base + f"/api/map.npy?element={el}")
        first_paint = time.perf_counter() - t

        def urls(kind: str):
            for _ in range(repeat):
                r, c = int(rng.integers(h)), int(rng.integers(w))
                if kind == "spectrum":
                    yield f"/api/spectrum?row={r}&col={c}"
                elif kind == "mean_spectrum (¼ of the scan)":
                    r0, c0 = int(rng.integers(h // 2)), int(rng.integers(w // 2))
                    yield f"/api/mean_spectrum?r0={r0}&r1={r0 + h // 2}&c0={c0}&c1={c0 + w // 2}"
                elif kind == "band.png (0.2-2 keV wide)":
                    lo = float(rng.uniform(1, 20))
                    yield f"/api/band.png?lo_kev={lo:.3f}&hi_kev={lo + rng.uniform(0.2, 2):.3f}"
                elif kind == "band.png (1-25 keV)":
                    yield f"/api/band.png?lo_kev={rng.uniform(0.9, 1.1):.3f}&hi_kev=25"
                elif kind == "band.npy":
                    lo = float(rng.uniform(1, 20))
                    yield f"/api/band.npy?lo_kev={lo:.3f}&hi_kev={lo + 0.5:.3f}"
                elif kind == "map.png":
                    yield f"/api/map.png?element={els[int(rng.integers(len(els)))]}"
                elif kind == "map.npy (what the page loads)":
                    yield f"/api/map.npy?element={els[int(rng.integers(len(els)))]}"
                elif kind == "total.npy":
                    yield "/api/total.npy"
                elif kind == "composite.png (4 maps)":
                    pick = rng.choice(len(els), 4, replace=False)
                    yield "/api/composite.png?elements=" + ",".join(els[i] for i in pick)

        kinds = ["spectrum", "mean_spectrum (¼ of the scan)", "band.png (0.2-2 keV wide)",
                 "band.png (1-25 keV)", "band.npy", "map.png", "map.npy (what the page loads)",
                 "total.npy", "composite.png (4 maps)"]
        if not els:  # a datastack without element maps yet: the counts' views only
            kinds = [k for k in kinds if not k.startswith(("map", "composite"))]
        rows = {}
        for kind in kinds:
            times = [get(base + u)[0] for u in urls(kind)]
            rows[kind] = {"p50_ms": 1000 * float(np.percentile(times, 50)),
                          "p95_ms": 1000 * float(np.percentile(times, 95)),
                          "max_ms": 1000 * max(times)}
        return {"height": h, "width": w, "server_ready_s": ready,
                "first_paint_s": first_paint, "calls": rows}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[512, 768])
    ap.add_argument("--full", action="store_true", help="also 1692 x 1592 (needs ~40 GB)")
    ap.add_argument("--repeat", type=int, default=12)
    ap.add_argument("--folder", default=str(ROOT / "benchmarks" / "data"))
    ap.add_argument("--keep", action="store_true", help="keep the generated datastacks")
    args = ap.parse_args()
    shapes = [(s, s) for s in args.sizes] + ([(1692, 1592)] if args.full else [])
    results = []
    for h, w in shapes:
        folder = Path(args.folder) / f"view-{h}x{w}"
        folder.mkdir(parents=True, exist_ok=True)
        path, bands_s = prepare(folder, h, w)
        res = measure(path, args.repeat)
        res["bands_step_s"] = bands_s
        res["datastack_gb"] = path.stat().st_size / 1e9
        results.append(res)
        print(f"\n{h} x {w} x 4096: server ready {res['server_ready_s']:.2f} s, first paint "
              f"{res['first_paint_s']:.2f} s, band layers built in {bands_s:.1f} s")
        for kind, r in res["calls"].items():
            print(f"  {kind:<32} p50 {r['p50_ms']:7.1f} ms   p95 {r['p95_ms']:7.1f} ms")
        if not args.keep:
            shutil.rmtree(folder)
    out = ROOT / "benchmarks" / "results-view.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"\nwrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    sys.exit(main())
