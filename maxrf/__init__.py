"""maxrf: MA-XRF scans (``.raw`` + ``.rpl``) to analysis-ready, crash-safe zarr datastacks.

The package face is lazy (as scikit-image's): ``import maxrf`` costs nothing, the names below are
imported on first use."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_LAZY = {
    "MaxrfError": "maxrf.errors",
    "open_raw": "maxrf.io.raw",
    "EnergyCalibration": "maxrf.io.rpl",
    "RplHeader": "maxrf.io.rpl",
    "read_rpl": "maxrf.io.rpl",
}
__all__ = ["EnergyCalibration", "MaxrfError", "RplHeader", "__version__", "open_raw", "read_rpl"]

if TYPE_CHECKING:
    from maxrf.errors import MaxrfError
    from maxrf.io.raw import open_raw
    from maxrf.io.rpl import EnergyCalibration, RplHeader, read_rpl


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'maxrf' has no attribute {name!r}")
