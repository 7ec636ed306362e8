"""A separate writer process for the crash and concurrency tests (run as a script)."""

from __future__ import annotations

import sys
import time

import dask.array as da
import numpy as np

from maxrf.datastack import DataStack, repack


def big_layer(seed: int, shape=(128, 128, 4096)) -> da.Array:
    """A deterministic ~256 MB float32 dask array (slow enough to be interrupted)."""
    return da.random.RandomState(seed).standard_normal(shape, chunks=(32, 64, 4096)).astype("f4")


def main() -> None:
    mode, path = sys.argv[1], sys.argv[2]
    ds = DataStack(path, lock_timeout=float(sys.argv[4]) if len(sys.argv) > 4 else 120)
    if mode == "append":
        print(ds.append(big_layer(int(sys.argv[3])), f"layer{sys.argv[3]}"), flush=True)
    elif mode == "append-small":
        print(
            ds.append(np.full((64, 64), int(sys.argv[3]), "i4"), f"small{sys.argv[3]}"), flush=True
        )
    elif mode == "repack":
        repack(ds)
    elif mode == "hold":
        with ds.write_lock():
            print("locked", flush=True)
            time.sleep(float(sys.argv[3]))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
