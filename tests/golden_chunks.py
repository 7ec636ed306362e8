"""Inputs of the golden blosc chunks in tests/data/golden (deterministic; regenerate the files
with ``python tests/golden_chunks.py`` only when a format change is intended)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numcodecs import Blosc

FOLDER = Path(__file__).parent / "data" / "golden"
CASES = {  # name: (codec as the datastack uses it, input)
    "raw-u2-bitshuffle": (Blosc("lz4", 5, Blosc.BITSHUFFLE), ("<u2", 0.7)),
    "cube-f4-shuffle": (Blosc("lz4", 5, Blosc.SHUFFLE), ("<f4", 300.0)),
    "raw-u2-zstd-bitshuffle": (Blosc("zstd", 3, Blosc.BITSHUFFLE), ("<u2", 2.0)),
    "small-u2-noshuffle": (Blosc("lz4", 1, Blosc.NOSHUFFLE), ("<u2", 1.0)),
}


def chunk_input(name: str) -> np.ndarray:
    """A (16, 16, 256) chunk like the datastack's: Poisson counts or smoothed floats."""
    _codec, (dtype, rate) = CASES[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    shape = {"small": (4, 4, 256), "cube": (8, 8, 256)}.get(name.split("-")[0], (16, 16, 256))
    x = rng.poisson(rate, shape)
    return (x * 1.37 if dtype == "<f4" else x).astype(dtype)


if __name__ == "__main__":
    FOLDER.mkdir(parents=True, exist_ok=True)
    for name, (codec, _) in CASES.items():
        (FOLDER / f"{name}.blosc").write_bytes(codec.encode(chunk_input(name)))
