"""maxrf: MA-XRF scans (``.raw`` + ``.rpl``) to analysis-ready, crash-safe zarr datastacks."""

from .errors import MaxrfError
from .raw import open_raw
from .rpl import EnergyCalibration, RplHeader, read_rpl

__version__ = "0.1.0"

__all__ = ["EnergyCalibration", "MaxrfError", "RplHeader", "__version__", "open_raw", "read_rpl"]
