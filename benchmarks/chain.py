"""The whole chain at real size (issue #28), each figure from fresh processes on this machine.

Default: the band layers' cost. A generated scan is converted three ways, alternately, ``--repeat``
times: the conversion alone (baseline), the conversion writing the band layers in its own pass
(what ``maxrf process`` does now), and the conversion followed by the band layers' own pass over
``maxrf_raw`` (what it did before). Prints medians, peak RSS and the ratios to the baseline.

``--full``: a generated 512² scan tiled to 1692 × 1592 × 4096 (22 GB of .raw and a ≈ 17 GB
datastack: ≈ 40 GB of disk; ``--tiled HxW`` for another size), ``maxrf process --no-plots`` on it
(wall, peak RSS, each step's time), each step's own peak RSS (the runner in one process, the
peak reset before each step through ``/proc/self/clear_refs``), then ``maxrf view`` with the
datastack dropped from the page cache (``posix_fadvise(DONTNEED)``) and warm.

    python benchmarks/chain.py [--size 512] [--repeat 3] [--full [--tiled 1692x1592]]
                               [--data DIR] [--keep]

Writes benchmarks/results-chain.json (results-chain-full.json with --full).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

CHILD = """
import sys, time, json
from pathlib import Path
from maxrf.pipeline.convert import convert
from maxrf.pipeline.bands import band_layers
import maxrf.xrf.smoothing
how, raw, out = sys.argv[1:4]
t = time.perf_counter()
convert(raw, out, progress=False, bands={"step": "bands"} if how == "fused" else None)
if how == "separate":
    band_layers(out, progress=False)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
print(json.dumps({"seconds": time.perf_counter() - t, "rss_mb": int(hwm.split()[1]) / 1024,
                  "mb": Path(out).stat().st_size / 1e6}))
"""

STEP_MEMORY = """
import sys, time, json
from maxrf.pipeline.runner import Runner, Scan
from maxrf.pipeline.table import chain
raw, out = sys.argv[1:3]
def peak():
    line = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
    return int(line.split()[1]) / 1024**2
runner, rows = Runner(out, {}, Scan.open(raw)), []
for s in chain(True, False):
    open("/proc/self/clear_refs", "w").write("5")  # the peak RSS starts again from here
    t = time.perf_counter()
    runner.run([s.name])
    rows.append({"step": s.name, "seconds": round(time.perf_counter() - t, 2),
                 "peak_rss_gib": round(peak(), 3)})
print(json.dumps(rows))
"""

HOWS = {"convert": "conversion alone (baseline)",
        "fused": "conversion + band layers in its pass (now)",
        "separate": "conversion, then the band layers' own pass (before)"}


def band_cost(folder: Path, size: int, repeat: int) -> dict:
    from maxrf.demo import DemoSpec, generate_scan

    raw = folder / f"bands{size}.raw"
    if not raw.exists():
        generate_scan(raw.with_suffix(""), DemoSpec(height=size, width=size, seed=4))
    runs: dict[str, list[dict]] = {h: [] for h in HOWS}
    for _ in range(repeat):
        for how in HOWS:
            out = folder / f"{how}.datastack"
            out.unlink(missing_ok=True)
            res = subprocess.run([sys.executable, "-c", CHILD, how, str(raw), str(out)],
                                 capture_output=True, text=True, check=True)
            runs[how].append(json.loads(res.stdout.strip().splitlines()[-1]))
            out.unlink()
    base = statistics.median(r["seconds"] for r in runs["convert"])
    table = {}
    for how, label in HOWS.items():
        s = statistics.median(r["seconds"] for r in runs[how])
        table[how] = {"label": label, "seconds": s, "ratio_to_baseline": s / base,
                      "rss_mb": max(r["rss_mb"] for r in runs[how]),
                      "datastack_mb": statistics.median(r["mb"] for r in runs[how]),
                      "runs": runs[how]}
    return {"size": size, "repeat": repeat, "results": table}


def tile_scan(folder: Path, height: int = 1692, width: int = 1592) -> Path:
    """A real-size scan tiled from a generated 512² one (written band by band)."""
    from maxrf.demo import DemoSpec, generate_scan
    from maxrf.io.rpl import read_rpl

    raw = folder / "big.raw"
    if raw.exists() and raw.stat().st_size == height * width * 4096 * 2:
        return raw
    generate_scan(folder / "tile", DemoSpec(height=512, width=512, seed=4))
    h = read_rpl(folder / "tile.rpl")
    tile = np.memmap(folder / "tile.raw", dtype=h.dtype, mode="r", shape=h.shape)
    text = (folder / "tile.rpl").read_text()
    text = re.sub(r"(?m)^(width\s*\t\s*)\d+", rf"\g<1>{width}", text)
    text = re.sub(r"(?m)^(height\s*\t\s*)\d+", rf"\g<1>{height}", text)
    (folder / "big.rpl").write_text(text)
    with open(raw, "wb") as f:
        for r in range(height):
            row = tile[r % 512]
            reps = -(-width // 512)
            f.write(np.concatenate([row] * reps, axis=0)[:width].tobytes())
    return raw


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def full(folder: Path, height: int, width: int) -> dict:
    import view  # benchmarks/view.py: the viewer's calls

    raw = tile_scan(folder, height, width)
    out = raw.with_suffix(".datastack")
    out.unlink(missing_ok=True)
    drop_cache(raw)
    t = time.perf_counter()
    # the command's own peak (os.wait4: this child and what it waited for; RUSAGE_CHILDREN
    # would also count the scan generator's worker processes above)
    with open(folder / "process.out", "w+") as out_f, open(folder / "process.err", "w+") as err_f:
        proc = subprocess.Popen([sys.executable, "-m", "maxrf.cli", "process", str(raw),
                                 "--no-plots"], stdout=out_f, stderr=err_f, cwd=folder)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        res = subprocess.CompletedProcess(proc.args, proc.returncode, out_f.read(), err_f.read())
    wall = time.perf_counter() - t
    rss = usage.ru_maxrss / 1024**2
    steps = {line.split()[1]: " ".join(line.split()[2:]) for line in res.stdout.splitlines()
             if line.strip().startswith("step ")}
    result = {"process": {"wall_s": wall, "peak_rss_gib": rss, "steps": steps,
                          "returncode": res.returncode, "stderr": res.stderr[-2000:]}}
    # each step's own peak RSS: the same runner in one process, the peak reset before each step
    out.unlink()
    res = subprocess.run([sys.executable, "-c", STEP_MEMORY, str(raw), str(out)],
                         capture_output=True, text=True)
    result["steps_memory"] = (json.loads(res.stdout.strip().splitlines()[-1])
                              if res.returncode == 0 else res.stderr[-2000:])
    drop_cache(out)
    result["view_cold"] = view.measure(out, repeat=3)
    result["view_warm"] = view.measure(out, repeat=12)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--tiled", default="1692x1592", help="the --full scan's HEIGHTxWIDTH")
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the generated scans")
    args = ap.parse_args()
    tmp = None if args.data else tempfile.TemporaryDirectory(dir=ROOT / "benchmarks")
    folder = args.data or Path(tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if args.full:
            height, width = (int(v) for v in args.tiled.lower().split("x"))
            result = {"height": height, "width": width, **full(folder, height, width)}
            name = "results-chain-full.json"
            print(json.dumps(result, indent=1))
        else:
            result = band_cost(folder, args.size, args.repeat)
            name = "results-chain.json"
            print(f"{args.size}² × 4096, median of {args.repeat} (fresh processes):")
            for row in result["results"].values():
                print(f"  {row['label']:<52} {row['seconds']:6.1f} s  "
                      f"×{row['ratio_to_baseline']:.2f}  RSS {row['rss_mb']:.0f} MB  "
                      f"{row['datastack_mb']:.0f} MB")
        (ROOT / "benchmarks" / name).write_text(json.dumps(result, indent=1))
    finally:
        if tmp is not None and not args.keep:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
