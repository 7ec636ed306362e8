"""The zip format's records that an append writes itself (APPNOTE 6.3.x): local headers of stored
entries, central-directory entries, and the end records (ZIP64 when sizes, offsets or counts
need it). Appending keeps the existing directory entries byte for byte: they are read from the
file's tail (which the rollback journal saves) and written again before the new ones.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

LOCAL_SIG, CENTRAL_SIG = 0x04034B50, 0x02014B50
EOCD_SIG, ZIP64_EOCD_SIG, ZIP64_LOCATOR_SIG = 0x06054B50, 0x06064B50, 0x07064B50
MAX32, MAX16 = 0xFFFFFFFF, 0xFFFF
_EOCD = struct.Struct("<IHHHHIIH")  # 22 bytes
_ZIP64_EOCD = struct.Struct("<IQHHIIQQQQ")  # 56 bytes
_ZIP64_LOCATOR = struct.Struct("<IIQI")  # 20 bytes
_LOCAL = struct.Struct("<IHHHHHIIIHH")  # 30 bytes
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # 46 bytes
_UNIX_ATTRS = 0o100644 << 16  # a regular file, rw-r--r--
_MADE_BY = (3 << 8) | 45  # UNIX, spec 4.5


class ZipFormatError(ValueError):
    """The file's end records are missing or inconsistent."""


@dataclass(frozen=True)
class Directory:
    """Where a zip's central directory is and its raw entries."""

    offset: int  # of the first central-directory entry (where appended data goes)
    entries: int
    records: bytes  # the central-directory entries, as stored


def read_directory(tail: bytes, tail_offset: int) -> Directory:
    """The central directory of a zip whose bytes from ``tail_offset`` on are ``tail`` (which
    must start at or before the directory, e.g. the rollback journal's saved tail)."""
    at = tail.rfind(struct.pack("<I", EOCD_SIG), max(0, len(tail) - MAX16 - _EOCD.size))
    if at < 0 or len(tail) - at < _EOCD.size:
        raise ZipFormatError("no end-of-central-directory record")
    _sig, _disk, _cd_disk, _n_disk, count, size, offset, _clen = _EOCD.unpack_from(tail, at)
    loc = at - _ZIP64_LOCATOR.size
    if loc >= 0 and struct.unpack_from("<I", tail, loc)[0] == ZIP64_LOCATOR_SIG:
        _s, _d, z64_at, _n = _ZIP64_LOCATOR.unpack_from(tail, loc)
        rel = z64_at - tail_offset
        if not 0 <= rel <= len(tail) - _ZIP64_EOCD.size:
            raise ZipFormatError("ZIP64 end record outside the saved tail")
        fields = _ZIP64_EOCD.unpack_from(tail, rel)
        if fields[0] != ZIP64_EOCD_SIG:
            raise ZipFormatError("bad ZIP64 end record")
        count, size, offset = fields[7], fields[8], fields[9]
    rel = offset - tail_offset
    if rel < 0 or rel + size > len(tail):
        raise ZipFormatError("central directory outside the saved tail")
    return Directory(offset, count, tail[rel : rel + size])


def dos_time(t: float | None = None) -> tuple[int, int]:
    """(time, date) fields of a local time."""
    y, mo, d, h, mi, s = time.localtime(time.time() if t is None else t)[:6]
    y = min(max(y, 1980), 2107)
    return (h << 11) | (mi << 5) | (s // 2), ((y - 1980) << 9) | (mo << 5) | d


def local_header(name: bytes, crc: int, size: int, when: tuple[int, int]) -> bytes:
    """The local header of a stored entry (sizes in a ZIP64 extra field when they need it)."""
    big = size >= MAX32
    extra = struct.pack("<HHQQ", 1, 16, size, size) if big else b""
    small = MAX32 if big else size
    return _LOCAL.pack(LOCAL_SIG, 45 if big else 20, 0, 0, when[0], when[1], crc, small, small,
                       len(name), len(extra)) + name + extra


def central_entry(name: bytes, crc: int, size: int, offset: int, when: tuple[int, int]) -> bytes:
    """The central-directory entry of a stored entry at ``offset``."""
    z64 = []
    if size >= MAX32:
        z64 += [size, size]
    if offset >= MAX32:
        z64.append(offset)
    extra = struct.pack(f"<HH{len(z64)}Q", 1, 8 * len(z64), *z64) if z64 else b""
    return _CENTRAL.pack(
        CENTRAL_SIG, _MADE_BY, 45 if z64 else 20, 0, 0, when[0], when[1], crc,
        MAX32 if size >= MAX32 else size, MAX32 if size >= MAX32 else size,
        len(name), len(extra), 0, 0, 0, _UNIX_ATTRS, MAX32 if offset >= MAX32 else offset,
    ) + name + extra  # fmt: skip


def end_records(cd_offset: int, cd_size: int, entries: int) -> bytes:
    """ZIP64 end record and locator when needed, then the end-of-central-directory record."""
    out = b""
    if entries >= MAX16 or cd_size >= MAX32 or cd_offset >= MAX32:
        at = cd_offset + cd_size
        out += _ZIP64_EOCD.pack(ZIP64_EOCD_SIG, _ZIP64_EOCD.size - 12, _MADE_BY, 45, 0, 0,
                                entries, entries, cd_size, cd_offset)
        out += _ZIP64_LOCATOR.pack(ZIP64_LOCATOR_SIG, 0, at, 1)
    n = min(entries, MAX16)
    return out + _EOCD.pack(EOCD_SIG, 0, 0, n, n, min(cd_size, MAX32), min(cd_offset, MAX32), 0)
