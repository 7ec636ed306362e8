"""Lispix "Ripple" (``.rpl``) header parsing: the whole spec plus the Bruker M6 variants.

Spec (Lispix, as implemented by RosettaSciIO): one ``key<TAB>value`` pair per line, ``;`` starts a
comment, unknown keys are kept but ignored. Bruker writes space-padded keys (``data-Length  \t 2``),
CRLF line ends and extra space-separated calibration lines (``depthscaleorigin   -0.956``). Keys and
values are matched case-insensitively. See ``docs/ripple.md`` for the key table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maxrf.errors import HeaderError, ScanNotFoundError

RECORD_BY = ("vector", "image", "dont-care")
BYTE_ORDERS = ("little-endian", "big-endian", "dont-care")
DATA_TYPES = {"signed": "i", "unsigned": "u", "float": "f"}
REQUIRED_KEYS = ("width", "height", "depth", "data-length", "data-type", "record-by")

# Energy calibration key triples: (gain key, origin key, units key), most specific first.
_CALIBRATION_KEYS = (
    ("depth-scale", "depth-origin", "depth-units"),  # HyperSpy / RosettaSciIO
    ("depthscaleincrement", "depthscaleorigin", "depthscaleunits"),  # Bruker layout B
)


@dataclass(frozen=True)
class EnergyCalibration:
    """Linear energy axis: ``energy_kev = offset_kev + gain_kev * channel``."""

    offset_kev: float
    gain_kev: float
    source: str = "header"

    def energies(self, channels: int) -> np.ndarray:
        """The energy (keV) of each of ``channels`` channels."""
        return self.offset_kev + self.gain_kev * np.arange(channels, dtype=np.float64)

    def to_dict(self) -> dict[str, float]:
        return {"offset_kev": self.offset_kev, "gain_kev": self.gain_kev}


@dataclass(frozen=True)
class RplHeader:
    """A parsed ``.rpl`` header; ``shape`` is (height, width, depth) as ``open_raw`` returns."""

    path: Path | None
    width: int
    height: int
    depth: int
    offset: int
    data_length: int
    data_type: str
    byte_order: str
    record_by: str
    energy: EnergyCalibration | None
    raw: dict[str, str] = field(default_factory=dict)
    depth_axis: dict | None = None  # a calibrated depth axis that is not energy (scale, units)

    @property
    def dtype(self) -> np.dtype:
        """The on-disk numpy dtype, byte order included (``<u2``, ``>f4`` …)."""
        order = {"little-endian": "<", "big-endian": ">", "dont-care": "="}[self.byte_order]
        dt = np.dtype(f"{DATA_TYPES[self.data_type]}{self.data_length}")
        return dt if dt.itemsize == 1 else dt.newbyteorder(order)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.depth)

    @property
    def raw_bytes_expected(self) -> int:
        return self.offset + self.width * self.height * self.depth * self.data_length

    def to_dict(self) -> dict:
        """A JSON-ready summary (the ``maxrf info --json`` object without file sizes)."""
        return {
            "header": None if self.path is None else str(self.path),
            "width": self.width,
            "height": self.height,
            "depth": self.depth,
            "dtype": self.dtype.str,
            "offset": self.offset,
            "record_by": self.record_by,
            "data_type": self.data_type,
            "data_length": self.data_length,
            "byte_order": self.byte_order,
            "raw_bytes_expected": self.raw_bytes_expected,
            "energy": None if self.energy is None else self.energy.to_dict(),
            "energy_source": None if self.energy is None else self.energy.source,
            "depth_axis": self.depth_axis,
            "keys": dict(self.raw),
        }


def _norm_key(key: str) -> str:
    """Case-insensitive, and ``data_length`` / ``data length`` mean ``data-length``."""
    return re.sub(r"[\s_]+", "-", key.strip().lower())


def _norm_word(value: str) -> str:
    """Normalise an enumerated value: case, apostrophes, spaces/underscores → hyphens."""
    v = value.strip().lower().replace("'", "").replace("_", "-")
    v = re.sub(r"\s+", "-", v)
    return "dont-care" if v in ("dontcare", "dont-care", "do-not-care") else v


def parse_rpl_text(text: str, path: Path | None = None) -> dict[str, str]:
    """Split header text into ``{lower-case key: value string}`` (all keys, unknown ones too)."""
    keys: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split(";", 1)[0].strip()
        if not line:
            continue
        if "\t" in line:  # key<TAB>value[<TAB>more fields]: the spec ignores extra fields
            key, *fields = line.split("\t")
            value = next((f for f in fields if f.strip()), "")
        else:
            parts = line.split(None, 1)
            key, value = parts[0], parts[1] if len(parts) > 1 else ""
        key, value = _norm_key(key), value.strip()
        if key == "key" or not key:
            continue  # the optional "key<TAB>value" title line
        if key in keys and keys[key] != value:
            raise HeaderError(
                f"'{key}' is given twice with different values ({keys[key]!r}, {value!r})", path
            )
        keys[key] = value
    return keys


def _int(keys: dict[str, str], key: str, path: Path | None, minimum: int) -> int:
    value = keys[key]
    try:
        number = float(value)
    except ValueError:
        raise HeaderError(f"'{key}' must be a whole number, got {value!r}", path) from None
    if not number.is_integer():
        raise HeaderError(f"'{key}' must be a whole number, got {value!r}", path)
    if number < minimum:
        raise HeaderError(f"'{key}' must be at least {minimum}, got {value!r}", path)
    return int(number)


def _float(keys: dict[str, str], key: str, path: Path | None) -> float:
    try:
        value = float(keys[key])
    except ValueError:
        raise HeaderError(f"'{key}' must be a number, got {keys[key]!r}", path) from None
    if not np.isfinite(value):
        raise HeaderError(f"'{key}' must be a finite number, got {keys[key]!r}", path)
    return value


def _choice(keys: dict[str, str], key: str, allowed, path: Path | None) -> str:
    value = _norm_word(keys[key])
    if value not in allowed:
        raise HeaderError(
            f"unknown {key} {keys[key]!r} (expected one of: {', '.join(allowed)})", path
        )
    return value


def _kev_factor(gain: float, units: str | None) -> float:
    """keV per header unit: explicit ``eV``/``keV`` wins; without units a gain > 0.5 is eV."""
    u = (units or "").strip().lower()
    if u == "ev":
        return 1e-3
    if u == "kev":
        return 1.0
    return 1e-3 if abs(gain) > 0.5 else 1.0


ENERGY_UNITS = ("ev", "kev")


def _depth_axis(keys: dict[str, str], path: Path | None) -> dict | None:
    """A calibrated depth axis in other units than energy (an image stack in metres, a time
    series): described by ``info``, refused by the conversion."""
    for gain_key, origin_key, units_key in _CALIBRATION_KEYS:
        units = keys.get(units_key)
        if gain_key in keys and units is not None and units.strip().lower() not in ENERGY_UNITS:
            return {"scale": _float(keys, gain_key, path),
                    "origin": _float(keys, origin_key, path) if origin_key in keys else 0.0,
                    "units": units.strip(), "source": gain_key}
    return None


def _energy(keys: dict[str, str], path: Path | None) -> EnergyCalibration | None:
    for gain_key, origin_key, units_key in _CALIBRATION_KEYS:
        if gain_key in keys:
            units = keys.get(units_key)
            if units is not None and units.strip().lower() not in ENERGY_UNITS:
                continue  # not an energy axis (see _depth_axis)
            gain = _float(keys, gain_key, path)
            if gain <= 0:
                raise HeaderError(f"'{gain_key}' must be positive, got {keys[gain_key]!r}", path)
            origin = _float(keys, origin_key, path) if origin_key in keys else 0.0
            factor = _kev_factor(gain, units)
            return EnergyCalibration(origin * factor, gain * factor, source=gain_key)
    if "ev-per-chan" in keys:
        gain = _float(keys, "ev-per-chan", path) / 1000.0
        if gain <= 0:
            raise HeaderError(f"'ev-per-chan' must be positive, got {keys['ev-per-chan']!r}", path)
        return EnergyCalibration(0.0, gain, source="ev-per-chan")
    return None


def header_from_keys(keys: dict[str, str], path: Path | None = None) -> RplHeader:
    """Validate parsed keys into an ``RplHeader`` (raises ``HeaderError`` naming the bad key)."""
    missing = [k for k in REQUIRED_KEYS if k not in keys]
    if missing:
        raise HeaderError(f"missing required key(s): {', '.join(missing)}", path)
    width = _int(keys, "width", path, 1)
    height = _int(keys, "height", path, 1)
    depth = _int(keys, "depth", path, 1)
    offset = _int(keys, "offset", path, 0) if "offset" in keys else 0
    data_length = _int(keys, "data-length", path, 1)
    data_type = _choice(keys, "data-type", tuple(DATA_TYPES), path)
    record_by = _choice(keys, "record-by", RECORD_BY, path)
    byte_order = (
        _choice(keys, "byte-order", BYTE_ORDERS, path) if "byte-order" in keys else "dont-care"
    )
    valid_lengths = (4, 8) if data_type == "float" else (1, 2, 4, 8)
    if data_length not in valid_lengths:
        raise HeaderError(
            f"data-length {data_length} is not valid for data-type {data_type} "
            f"(expected {', '.join(map(str, valid_lengths))})",
            path,
        )
    if record_by == "dont-care" and depth != 1:
        raise HeaderError(f"record-by dont-care means a 2-D image, but depth is {depth}", path)
    return RplHeader(
        path=path,
        width=width,
        height=height,
        depth=depth,
        offset=offset,
        data_length=data_length,
        data_type=data_type,
        byte_order=byte_order,
        record_by=record_by,
        energy=_energy(keys, path),
        raw=dict(keys),
        depth_axis=_depth_axis(keys, path),
    )


MAX_HEADER_BYTES = 1 << 20  # real headers are < 1 kB


def read_small_file(path: Path, limit: int, what: str) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (a FIFO, a device or a huge file
    is refused at once instead of hanging or filling memory)."""
    import os
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise HeaderError(f"cannot read ({exc.strerror})", path) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise HeaderError(f"is not a regular file (expected {what})", path)
        if st.st_size > limit:
            raise HeaderError(f"is {st.st_size} bytes, too large for {what}", path)
        return os.read(fd, limit + 1)[:limit]
    finally:
        os.close(fd)


def read_rpl(path: str | Path) -> RplHeader:
    """Read and validate a ``.rpl`` header file."""
    path = Path(path)
    if not path.exists():
        raise ScanNotFoundError("header file not found", path)
    if path.is_dir():
        raise HeaderError("is a directory, not a .rpl header", path)
    data = read_small_file(path, MAX_HEADER_BYTES, "a .rpl header")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 with a byte-order mark
        data = data.decode("utf-16").encode("utf-8")
    if b"\0" in data[:4096]:
        raise HeaderError("is a binary file, not a .rpl text header", path)
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    keys = parse_rpl_text(text, path)
    if not keys:
        raise HeaderError("empty header (no key/value lines)", path)
    return header_from_keys(keys, path)


def format_rpl(
    width: int,
    height: int,
    depth: int,
    dtype: np.dtype | str = "<u2",
    record_by: str = "vector",
    offset: int = 0,
    layout: str = "A",
    energy: EnergyCalibration | None = None,
) -> str:
    """Write a header as Bruker does: layout ``A`` (9 padded lines, CRLF) or ``B`` (A + calibration)
    or ``lispix`` (plain ``key<TAB>value`` with HyperSpy calibration keys)."""
    dt = np.dtype(dtype)
    data_type = {"i": "signed", "u": "unsigned", "f": "float"}[dt.kind]
    order = {"<": "little-endian", ">": "big-endian", "=": "little-endian", "|": "dont-care"}
    byte_order = order[dt.byteorder if dt.byteorder != "=" else ("<" if np.little_endian else ">")]
    pairs = [
        ("key", "value"),
        ("width", width),
        ("height", height),
        ("depth", depth),
        ("offset", offset),
        ("data-Length", dt.itemsize),
        ("data-type", data_type),
        ("byte-order", byte_order),
        ("record-by", record_by),
    ]
    layout = layout.upper() if layout.lower() != "lispix" else "lispix"
    if layout == "lispix":
        lines = [f"{k.lower()}\t{v}" for k, v in pairs]
        if energy is not None:
            lines += [
                f"depth-scale\t{energy.gain_kev * 1000:.6g}",
                f"depth-origin\t{energy.offset_kev * 1000:.6g}",
                "depth-units\teV",
            ]
        return "\n".join(lines) + "\n"
    if layout not in ("A", "B"):
        raise ValueError(f"unknown header layout {layout!r} (expected A, B or lispix)")
    lines = [f"{k:<11}\t {v}" for k, v in pairs]
    if layout == "B":
        cal = energy or EnergyCalibration(-0.956, 0.010002)
        lines += [
            f"{'depthbinsize':<24}{1:>3}",
            f"{'depth1':<24}{200:>5}",
            f"{'depth2':<23}{min(3000, depth):>6}",
            f"{'depthscaleorigin':<24}{cal.offset_kev:>8.6g}",
            f"{'depthscaleincrement':<23}{cal.gain_kev:>10.6g}",
            f"{'depthscaleunits':<24}keV",
        ]
    return "\r\n".join(lines) + "\r\n"
