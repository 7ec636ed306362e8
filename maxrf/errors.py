"""Exceptions raised by maxrf: every user-facing failure is a ``MaxrfError`` with one clear line."""

from __future__ import annotations

from pathlib import Path


class MaxrfError(Exception):
    """Base class for errors a user can act on; ``str(err)`` is ``"<file>: <what is wrong>"``."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.reason = message
        super().__init__(f"{path}: {message}" if path is not None else message)


class HeaderError(MaxrfError):
    """A ``.rpl`` header is missing, unreadable, or has missing/invalid keys or values."""


class RawSizeError(MaxrfError):
    """A ``.raw`` file does not have the size its header promises."""


class ScanNotFoundError(MaxrfError):
    """A scan file (``.raw`` or ``.rpl``) does not exist."""


class DataStackError(MaxrfError):
    """A datastack file is unreadable, not a datastack, or cannot be written."""


class LockTimeoutError(DataStackError):
    """Another process holds the datastack's writer lock for longer than the timeout."""


class LayerNotFoundError(DataStackError, KeyError):
    """A layer name is not in the datastack."""

    def __str__(self) -> str:  # KeyError would quote the message
        return Exception.__str__(self)


class CalibrationError(MaxrfError):
    """Energy calibration could not find enough consistent landmarks."""


class SpectrumError(MaxrfError):
    """A spectrum or cube is unusable for analysis (flat, no peaks, NaN, saturated)."""


class DataWarning(UserWarning):
    """Values a scan should not hold (NaN, negative counts): converted, but worth a look."""
