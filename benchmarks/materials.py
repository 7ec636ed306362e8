"""Materials maps against the planted paints of generated mosaics.

For each seed: a 64 x 96 mosaic of N paints (pigment mixtures, laid on ±15 % thicker or thinner)
goes through the whole chain; the materials step's labels are compared with the planted ones
(adjusted Rand index, 1 = the same partition) and the number of materials it chose with N.
Usage: python benchmarks/materials.py [--size 64x96]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from maxrf.datastack import DataStack
from maxrf.demo import DemoSpec, generate_scan
from maxrf.pipeline.materials import adjusted_rand_index
from maxrf.pipeline.runner import process

CASES = ((1, 5), (2, 7), (3, 4), (4, 6), (5, 3), (6, 8))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", default="64x96")
    h, w = (int(v) for v in ap.parse_args().size.split("x"))
    print(f"{'seed':>4} {'paints':>6} {'found':>5} {'ARI':>6} {'step s':>7}")
    aris = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed, paints in CASES:
            prefix = Path(tmp) / f"m{seed}"
            generate_scan(prefix, DemoSpec(height=h, width=w, seed=seed, paints=paints,
                                           layout="B"))
            runs = process(f"{prefix}.raw", plots=False, progress=False)
            seconds = next(r.seconds for r in runs if r.step == "materials")
            ds = DataStack(f"{prefix}.datastack")
            labels = ds.read("maxrf_materials")
            truth = np.load(f"{prefix}.truth.npz")["materials"]
            ari = adjusted_rand_index(labels, truth)
            aris.append(ari)
            print(f"{seed:>4} {paints:>6} {ds.attrs('maxrf_materials')['k']:>5} {ari:6.3f} "
                  f"{seconds:7.2f}")
    print(f"mean ARI {np.mean(aris):.3f}; >= 0.9 in {sum(a >= 0.9 for a in aris)} of "
          f"{len(aris)}")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"({time.perf_counter() - t0:.0f} s)")
