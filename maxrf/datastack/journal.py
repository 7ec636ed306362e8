"""Rollback journal for appending to a zip file in place.

Appending to a zip overwrites its central directory and writes a new one only at close; a crash in
between leaves an unreadable file. Everything before the old directory is never touched, so saving
the old tail (directory + end record, a few kB) to a fsynced journal before appending lets any later
open restore the last committed file byte for byte, as SQLite's rollback journal does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import zipfile
from pathlib import Path

from maxrf.datastack.lock import fsync_dir

log = logging.getLogger("maxrf")
MAGIC = b"MAXRF-ZIP-JOURNAL 1\n"


class JournalMismatch(Exception):
    """A leftover journal belongs to another file than the one now at its path (set aside)."""

    def __init__(self, aside: Path) -> None:
        self.aside = aside
        super().__init__(str(aside))


IDENTITY_BYTES = 1 << 16  # hashed at the start of the file and just before its directory


def _identity(f, start_dir: int) -> dict:
    """What ties a journal to its file: device and inode, and hashes of bytes an append never
    touches (the file's start and the 64 KiB before the directory it replaces)."""
    st = os.fstat(f.fileno())
    f.seek(0)
    head = f.read(min(IDENTITY_BYTES, start_dir))
    f.seek(max(0, start_dir - IDENTITY_BYTES))
    before = f.read(start_dir - max(0, start_dir - IDENTITY_BYTES))
    return {"dev": st.st_dev, "ino": st.st_ino, "head_sha256": hashlib.sha256(head).hexdigest(),
            "before_sha256": hashlib.sha256(before).hexdigest()}


def belongs_to(header: dict, zip_path: Path) -> bool:
    """True when the journal was written for this very file (same inode, same untouched bytes);
    journals of older versions, without an identity, are taken as before."""
    if "ino" not in header:
        return True
    try:
        with open(zip_path, "rb") as f:
            if os.fstat(f.fileno()).st_size < header["start_dir"]:
                return False
            ident = _identity(f, header["start_dir"])
    except OSError:
        return False
    return all(ident[k] == header[k] for k in ("dev", "ino", "head_sha256", "before_sha256"))


def write_journal(journal: Path, zip_path: Path, start_dir: int) -> bytes:
    """Save ``zip_path[start_dir:]`` to ``journal`` durably before the zip is modified; returns
    that tail (the directory the append will write again)."""
    with open(zip_path, "rb") as f:
        f.seek(start_dir)
        tail = f.read()
        size = f.seek(0, os.SEEK_END)
        ident = _identity(f, start_dir)
    header = {"size": size, "start_dir": start_dir, "sha256": hashlib.sha256(tail).hexdigest(),
              **ident}
    tmp = journal.with_name(journal.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC + json.dumps(header).encode() + b"\n" + tail)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, journal)
    finally:
        tmp.unlink(missing_ok=True)  # a full disk: nothing left behind
    fsync_dir(journal.parent)
    return tail


def read_journal(journal: Path) -> tuple[int, bytes, dict] | None:
    """``(start_dir, tail, header)`` of a complete journal, or None when missing or torn."""
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
    return int(header["start_dir"]), tail, header


def committed_since(zip_path: Path, start_dir: int, tail: bytes) -> bool:
    """True when the file is no torn append but a complete zip committed after the journal was
    written (our own commit that died before removing the journal, or a newer copy written over
    the file that keeps its prefix): its directory starts past the journaled one and lists every
    entry of the journaled state at the same offset. Such a file must never be cut back."""
    view = CommittedView(zip_path, start_dir, tail)
    try:
        with zipfile.ZipFile(view) as old:
            before = {i.filename: i.header_offset for i in old.infolist()}
        with zipfile.ZipFile(zip_path) as zf:
            if zf.start_dir <= start_dir:
                return False
            now = {i.filename: i.header_offset for i in zf.infolist()}
    except (OSError, zipfile.BadZipFile, ValueError):
        return False
    finally:
        view.close()
    return all(now.get(name) == offset for name, offset in before.items())


def rollback(journal: Path, zip_path: Path) -> bool:
    """Restore the committed zip from the journal and delete it; True when bytes were restored.

    A torn journal means the crash came before the zip was touched: it is just removed. A journal
    whose file was replaced (another inode or other untouched bytes) is set aside; one whose file
    holds a complete later commit is removed without touching the file.
    """
    saved = read_journal(journal)
    restored = False
    if saved is not None and zip_path.exists() and not belongs_to(saved[2], zip_path):
        # another file now has this name (copied or moved over it): never write into it
        aside = journal.with_name(f"{journal.name}.orphan-{int(time.time())}")
        os.replace(journal, aside)
        raise JournalMismatch(aside)
    if saved is not None and zip_path.exists() and committed_since(zip_path, *saved[:2]):
        log.warning("maxrf: %s: a leftover journal predates the file's current content; "
                    "removed it, the file is untouched", zip_path)
        saved = None
    if saved is not None and zip_path.exists():
        start_dir, tail, _header = saved
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

    def __init__(self, zip_path: Path, start_dir: int, tail: bytes, header: dict | None = None
                 ) -> None:
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
