"""OS-level file locks (``fcntl.flock``): released by the kernel when the holder dies."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from maxrf.errors import DataStackError, LockTimeoutError
from maxrf.io.atomic import fsync_dir  # noqa: F401  (re-exported)


def try_lock(fd: int, exclusive: bool = True) -> bool:
    """Take the lock without waiting; True when taken."""
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise


@contextmanager
def file_lock(
    path: Path,
    timeout: float = 60.0,
    exclusive: bool = True,
    what: str = "writer lock",
    create: bool = True,
) -> Iterator[int]:
    """Hold a lock on ``path`` (created if needed, unless ``create`` is false: then the file
    itself is locked), waiting up to ``timeout`` seconds."""
    try:
        flags = os.O_RDWR | os.O_CREAT if create else os.O_RDONLY
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        raise DataStackError(f"cannot open lock file ({exc.strerror})", path) from None
    try:
        deadline = time.monotonic() + timeout
        delay = 0.01
        while not try_lock(fd, exclusive):
            if time.monotonic() >= deadline:
                raise LockTimeoutError(
                    f"another process holds the {what}; gave up after {timeout:g} s "
                    "(is another maxrf run writing this file?)",
                    path,
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        yield fd
    finally:
        os.close(fd)  # closing releases the lock


@contextmanager
def step_lock(datastack: Path, step: str, timeout: float = 24 * 3600) -> Iterator[int]:
    """The lock that makes concurrent runs on one datastack compute a step once (a hidden
    ``.NAME.locks`` folder beside it, one file per step), whoever runs the step."""
    datastack = Path(datastack)
    datastack.parent.mkdir(parents=True, exist_ok=True)
    locks = datastack.with_name(f".{datastack.name}.locks")
    locks.mkdir(exist_ok=True)
    with file_lock(locks / f"{step}.lock", timeout=timeout, what=f"{step} step lock") as fd:
        yield fd
