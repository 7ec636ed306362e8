"""Rollback journal for appending to a zip file in place.

Appending to a zip overwrites its central directory and writes a new one only at close; a crash in
between leaves an unreadable file. Everything before the old directory is never touched, so saving
the old tail (directory + end record, a few kB) to a fsynced journal before appending lets any later
open restore the last committed file byte for byte, as SQLite's rollback journal does.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .lock import fsync_dir

MAGIC = b"MAXRF-ZIP-JOURNAL 1\n"


def write_journal(journal: Path, zip_path: Path, start_dir: int) -> None:
    """Save ``zip_path[start_dir:]`` to ``journal`` durably before the zip is modified."""
    with open(zip_path, "rb") as f:
        f.seek(start_dir)
        tail = f.read()
        size = f.seek(0, os.SEEK_END)
    header = {"size": size, "start_dir": start_dir, "sha256": hashlib.sha256(tail).hexdigest()}
    tmp = journal.with_name(journal.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(MAGIC + json.dumps(header).encode() + b"\n" + tail)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, journal)
    fsync_dir(journal.parent)


def read_journal(journal: Path) -> tuple[int, bytes] | None:
    """``(start_dir, tail)`` of a complete journal, or None when it is missing or torn."""
    try:
        data = journal.read_bytes()
    except FileNotFoundError:
        return None
    if not data.startswith(MAGIC):
        return None
    try:
        line, tail = data[len(MAGIC) :].split(b"\n", 1)
        header = json.loads(line)
    except ValueError:
        return None
    if hashlib.sha256(tail).hexdigest() != header.get("sha256"):
        return None
    if header["size"] != header["start_dir"] + len(tail):
        return None
    return int(header["start_dir"]), tail


def rollback(journal: Path, zip_path: Path) -> bool:
    """Restore the committed zip from the journal and delete it; True when bytes were restored.

    A torn journal means the crash came before the zip was touched: it is just removed.
    """
    saved = read_journal(journal)
    restored = False
    if saved is not None and zip_path.exists():
        start_dir, tail = saved
        with open(zip_path, "r+b") as f:
            f.truncate(start_dir)
            f.seek(start_dir)
            f.write(tail)
            f.flush()
            os.fsync(f.fileno())
        restored = True
    for leftover in (journal, journal.with_name(journal.name + ".tmp")):
        leftover.unlink(missing_ok=True)
    fsync_dir(journal.parent)
    return restored


class CommittedView:
    """A read-only file object showing the committed zip while an append is under way:
    the untouched prefix of the live file followed by the journal's saved tail."""

    def __init__(self, zip_path: Path, start_dir: int, tail: bytes) -> None:
        self._f = open(zip_path, "rb")
        self._start = start_dir
        self._tail = tail
        self._size = start_dir + len(tail)
        self._pos = 0

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def read(self, n: int = -1) -> bytes:
        end = self._size if n is None or n < 0 else min(self._size, self._pos + n)
        out = b""
        if self._pos < self._start:
            self._f.seek(self._pos)
            out = self._f.read(min(end, self._start) - self._pos)
        if end > self._start:
            lo = max(self._pos, self._start) - self._start
            out += self._tail[lo : end - self._start]
        self._pos += len(out)
        return out

    def close(self) -> None:
        self._f.close()
