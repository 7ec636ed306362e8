"""The tube voltage a run uses: the one given, else the one the scan file records (a Bruker
``.bcf``/``.spx`` says it), else the default. A recorded voltage the physics does not model (an
electron microscope's 200 kV beam) is not used."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from maxrf.xrf.defaults import DEFAULT_TUBE_KV, TUBE_KV_RANGE


def file_tube_kv(metadata: Mapping[str, Any] | None) -> float | None:
    """The tube voltage a scan file records (its metadata's ``tube_kv``), when usable."""
    try:
        kv = float((metadata or {}).get("tube_kv"))
    except (TypeError, ValueError):
        return None
    lo, hi = TUBE_KV_RANGE
    return kv if math.isfinite(kv) and lo <= kv <= hi else None


def tube_voltage(given: float | None, metadata: Mapping[str, Any] | None = None) -> float:
    """``given`` when given, else the file's voltage, else the default (50 kV)."""
    if given is not None:
        return float(given)
    kv = file_tube_kv(metadata)
    return kv if kv is not None else DEFAULT_TUBE_KV


def recorded_metadata(datastack) -> dict:
    """The scan file's metadata the conversion recorded (the cube's ``source``), or {}."""
    from maxrf.datastack import DataStack

    ds = DataStack.of(datastack)
    if not ds.path.exists() or "maxrf_cube" not in ds:
        return {}
    return dict(ds.attrs("maxrf_cube").get("source", {}).get("metadata") or {})
