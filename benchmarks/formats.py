"""Conversion speed of one cube from each scan format: the Ripple pair against the same counts
in a Crono HDF5 file (spectra in a shuffled order, gathered by the index map), same run.

    python benchmarks/formats.py [--size 512] [--repeat 2]

Prints seconds, MB/s of .raw-equivalent counts and the Crono/Ripple ratio (target ≥ 0.8).
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
        xrf.create_dataset("EnergyVector", data=(scan.header.energy.energies(c)).astype(
            np.float32))
        xrf.create_dataset("SpectraSelectedIndex", data=index[:, :, None].astype(np.int32))
        xrf.attrs["TubeVoltage"] = 50.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--orders", nargs="+", default=["serpentine", "random"])
    args = ap.parse_args()
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
