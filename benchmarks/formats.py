"""Conversion speed of one cube from each scan format: the Ripple pair against the same counts
in a Crono HDF5 file (spectra in a shuffled order, gathered by the index map), same run.

    python benchmarks/formats.py [--size 512] [--repeat 2]
    python benchmarks/formats.py --tiled 1692x1592 [--data DIR]

Prints seconds, MB/s of .raw-equivalent counts and the Crono/Ripple ratio (target ≥ 0.8).
``--tiled``: a generated 512² scan tiled to that size (benchmarks/chain.py's ``tile_scan``), one
run of each in turn with what is not needed any more deleted between them (the .raw, a Crono copy
and a datastack would need ≈ 61 GB at 1692 × 1592; this keeps the peak at ≈ 44 GB); each
conversion runs in a fresh process and its own peak RSS is printed.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def write_crono(path: Path, raw_path: Path, order: str, rows: int = 16) -> None:
    """The Crono layout of a Ripple scan, written block by block (bounded memory): spectra in
    scan order, serpentine (every other row reversed, as a scanner goes back and forth) or a
    random order (the worst case)."""
    import h5py

    from maxrf.io.raw import open_scan

    scan = open_scan(raw_path)
    h, w, c = scan.header.shape
    index = np.arange(h * w).reshape(h, w)  # where each pixel's spectrum is in /XRF/Spectra
    if order == "serpentine":
        index[1::2] = index[1::2, ::-1]
    elif order == "random":
        index = np.random.default_rng(0).permutation(h * w).reshape(h, w)
    f_raw = scan.file()
    with h5py.File(path, "w") as f:
        xrf = f.create_group("XRF")
        spectra = xrf.create_dataset("Spectra", (h * w, c), dtype=scan.header.dtype,
                                     chunks=(64, c))
        for r0 in range(0, h, rows):
            block = f_raw.read_block(slice(r0, r0 + rows), slice(0, w)).reshape(-1, c)
            where = index[r0 : r0 + rows].ravel()
            sort = np.argsort(where)
            spectra[where[sort]] = block[sort]
        energy = scan.header.energy  # a layout-A header has none: a typical 10 eV axis
        axis = energy.energies(c) if energy is not None else 0.01 * np.arange(c) - 0.96
        xrf.create_dataset("EnergyVector", data=axis.astype(np.float32))
        xrf.create_dataset("SpectraSelectedIndex", data=index[:, :, None].astype(np.int32))
        xrf.attrs["TubeVoltage"] = 50.0


# VmHWM, not ru_maxrss: Linux carries the parent's peak RSS at fork into the child's ru_maxrss
CHILD = """
import sys, time, json
from maxrf.pipeline.convert import convert
t = time.perf_counter()
convert(sys.argv[1], output=sys.argv[2], progress=False)
hwm = [x for x in open("/proc/self/status") if x.startswith("VmHWM")][0]
print(json.dumps({"seconds": time.perf_counter() - t, "rss_gib": int(hwm.split()[1]) / 2**20}))
"""


def converted(src: Path, out: Path) -> dict:
    """One conversion in a fresh process: seconds and peak RSS."""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", CHILD, str(src), str(out)], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def tiled(folder: Path, height: int, width: int) -> None:
    """Ripple, then Crono (serpentine) at real size, deleting what is no longer needed."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from chain import drop_cache, tile_scan

    raw = tile_scan(folder, height, width)
    drop_cache(raw)  # both conversions read a cold file
    gb = raw.stat().st_size / 1e9
    out = folder / "big.datastack"
    ripple = converted(raw, out)
    print(f"ripple: {ripple}", flush=True)
    out.unlink()
    t0 = time.perf_counter()
    write_crono(folder / "big.hdf5", raw, "serpentine")
    written = time.perf_counter() - t0
    raw.unlink()
    drop_cache(folder / "big.hdf5")
    crono = converted(folder / "big.hdf5", out)
    out.unlink()
    (folder / "big.hdf5").unlink()
    print(f"{height} x {width} x 4096 ({gb:.1f} GB of counts), one run each, fresh processes")
    for name, r in (("ripple", ripple), ("crono (serpentine)", crono)):
        ratio = "" if name == "ripple" else (
            f"  {ripple['seconds'] / r['seconds']:.2f} of the Ripple speed")
        print(f"  {name:<20} {r['seconds']:6.1f} s  {gb * 1e3 / r['seconds']:5.0f} MB/s  "
              f"peak RSS {r['rss_gib']:.2f} GiB{ratio}")
    print(f"  (writing the Crono file took {written:.0f} s; target: >= 0.8, RSS <= 1.5 GiB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--orders", nargs="+", default=["serpentine", "random"])
    ap.add_argument("--tiled", help="HEIGHTxWIDTH: a tiled real-size scan, low on disk")
    ap.add_argument("--data", help="folder for the --tiled files (default: a temporary one)")
    args = ap.parse_args()
    if args.tiled:
        height, width = (int(v) for v in args.tiled.lower().split("x"))
        if args.data:
            Path(args.data).mkdir(parents=True, exist_ok=True)
            tiled(Path(args.data), height, width)
        else:
            with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
                tiled(Path(tmp), height, width)
        return
    from maxrf.demo import DemoSpec, generate_scan
    from maxrf.pipeline.convert import convert

    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        tmp = Path(tmp)
        generate_scan(tmp / "s", DemoSpec(height=args.size, width=args.size, seed=1,
                                          layout="B"))
        sources = [("ripple", tmp / "s.raw")]
        for order in args.orders:
            write_crono(tmp / f"{order}.hdf5", tmp / "s.raw", order)
            sources.append((f"crono ({order})", tmp / f"{order}.hdf5"))
        mb = (tmp / "s.raw").stat().st_size / 1e6
        best = {}
        for _ in range(args.repeat):
            for name, src in sources:
                out = tmp / f"{name.split()[-1].strip('()')}.datastack"
                if out.exists():
                    out.unlink()
                t0 = time.perf_counter()
                convert(src, output=out, progress=False)
                best[name] = min(best.get(name, 1e9), time.perf_counter() - t0)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"{args.size} x {args.size} x 4096 ({mb:.0f} MB of counts), best of {args.repeat}")
        for name, s in best.items():
            ratio = "" if name == "ripple" else f"  {best['ripple'] / s:.2f} of the Ripple speed"
            print(f"  {name:<20} {s:6.2f} s  {mb / s:7.0f} MB/s{ratio}")
        print(f"  target: >= 0.8 of the Ripple speed; peak RSS of this process {rss:.2f} GiB")


if __name__ == "__main__":
    main()
