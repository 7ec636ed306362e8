"""Layer naming, versions (``name``, ``name_``, ``name__``), ragged lists and storage choices."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from zarr.codecs import BloscCodec

from maxrf.errors import DataStackError

PAD = -9999
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
CUBE_CHUNK_PIXELS = 16  # 16x16 pixels x all channels; see README "Performance" for the figures
# The smoothed cube is stored to 2**-(bits+1) of each spectrum's peak (README, "The datastack");
# the default (DEFAULT_PRECISION_BITS) is in the pipeline table.
PRECISION_BITS = range(1, 25)  # the grids a user may choose (24: float32's own precision)


def check_name(name: str) -> str:
    """A plain layer name: letters, digits, ``_ . -``; no ``/``, no ``..``, no trailing ``_``."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name or name.endswith("_"):
        raise DataStackError(
            f"invalid layer name {name!r}: use letters, digits, '_', '.', '-' "
            "(no '/', no '..', no trailing '_', which marks versions)"
        )
    return name


def base_name(name: str) -> str:
    return name.rstrip("_")


def versions(name: str, names: Iterable[str]) -> list[str]:
    """Existing versions of ``name``, oldest first."""
    base = base_name(name)
    found = [n for n in names if base_name(n) == base and n.startswith(base)]
    return sorted(found, key=len)


def next_version(name: str, names: Iterable[str]) -> str:
    existing = versions(name, names)
    return name if not existing else existing[-1] + "_"


def ragged_to_padded(rows: Sequence[Sequence[int]]) -> np.ndarray:
    """Pad ragged int lists with ``PAD`` into a 2-D int64 array (empty rows allowed)."""
    arrays = []
    for i, row in enumerate(rows):
        a = np.asarray(row)
        if a.ndim != 1 and a.size:
            raise DataStackError(f"row {i} of the ragged list is not one-dimensional")
        a = a.reshape(-1)
        if a.size and not np.issubdtype(a.dtype, np.integer):
            if not np.all(np.equal(np.mod(a, 1), 0)):
                raise DataStackError(f"row {i} of the ragged list holds non-integers")
        a = a.astype(np.int64)
        if np.any(a == PAD):
            raise DataStackError(f"row {i} holds {PAD}, the pad value of ragged lists")
        arrays.append(a)
    width = max((a.size for a in arrays), default=0)
    out = np.full((len(arrays), width), PAD, dtype=np.int64)
    for i, a in enumerate(arrays):
        out[i, : a.size] = a
    return out


def padded_to_ragged(padded: np.ndarray) -> list[np.ndarray]:
    return [row[row != PAD] for row in np.asarray(padded)]


def default_chunks(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Cubes: 16x16 pixels x all channels. Other arrays: one chunk up to 16 MB, else auto-like."""
    if len(shape) == 3 and shape[2] > 64:
        p = CUBE_CHUNK_PIXELS
        return (min(p, shape[0]) or 1, min(p, shape[1]) or 1, max(shape[2], 1))
    total = int(np.prod(shape, dtype=np.int64)) * itemsize
    if total <= 16 * 2**20:
        return tuple(max(s, 1) for s in shape)
    chunks = [max(s, 1) for s in shape]
    while int(np.prod(chunks)) * itemsize > 16 * 2**20:
        i = int(np.argmax(chunks))
        chunks[i] = max(1, chunks[i] // 2)
    return tuple(chunks)


def default_compressor(dtype: np.dtype) -> BloscCodec:
    """Counts: blosc-lz4(5) bit-shuffle; floats: blosc-lz4(5) byte-shuffle (README, Performance)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iub":
        return BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle", typesize=dtype.itemsize)
    return BloscCodec(cname="lz4", clevel=5, shuffle="shuffle", typesize=dtype.itemsize)

ROOT_META = {"zarr_format": 3, "node_type": "group", "attributes": {}}
ARRAY_CONFIG = {"write_empty_chunks": True}  # every chunk stored: a missing one means damage


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def layer_names(namelist: list[str]) -> list[str]:
    """Top-level arrays in commit order (an array's metadata is the last entry written)."""
    seen: list[str] = []
    for n in namelist:
        parts = n.split("/")
        if len(parts) == 2 and parts[1] == "zarr.json" and parts[0] not in seen:
            seen.append(parts[0])
    return seen


def jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
