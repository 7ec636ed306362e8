"""Files appear whole or not at all: written under a unique temporary name in the same folder,
then renamed over the target, so two runs writing the same file at once never trip over each
other's temporary file. Used for everything maxrf writes whole (datastacks made by recover and
repack, new datastacks, plots, exports, CSV, ledgers)."""

from __future__ import annotations

import glob
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def atomic_write(
    path: str | Path, write: Callable[[str], object], durable: bool = False, tag: str = ""
) -> Path:
    """Call ``write(temporary_path)``, then rename it to ``path``; nothing is left on failure.
    ``durable``: the data and the rename are on disk (fsync) before this returns. ``tag`` names
    the temporary file (``.NAME.TAG-XXXX.tmp``) so a later run can tell what was interrupted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temporaries(path)
    prefix = f".{path.name}.{tag}-" if tag else f".{path.name}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _mode_for(path))  # mkstemp makes 0600 files: use what a plain open would
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


STALE_TMP_S = 600.0  # a temporary file untouched this long belongs to a writer that died


def sweep_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporary files earlier writes of ``path`` left when killed (a live writer
    keeps touching its own); returns what was removed."""
    now, gone = time.time(), []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if now - tmp.stat().st_mtime > STALE_TMP_S:
                tmp.unlink()
                gone.append(tmp)
        except OSError:
            continue
    return gone


def _mode_for(path: Path) -> int:
    """The replaced file's permissions, or a new file's under the process umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, for every thread)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def fsync_dir(folder: str | Path) -> None:
    """Make a rename in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
