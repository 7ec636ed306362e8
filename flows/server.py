"""The local Prefect server the ``maxrf`` commands share.

Without ``PREFECT_API_URL``, Prefect would start a temporary server for every command (≈ 8–11 s
here). Instead the first command starts ``prefect server start`` in the background, with its own
``PREFECT_HOME`` under the user's data folder, and every later command (and Python code that calls
:func:`use_server`) reuses it: ≈ 1–2 s per run. ``maxrf server status|stop`` manage it;
``MAXRF_SERVER=temporary`` (or ``maxrf --temporary-server``) keeps Prefect's temporary server.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

from maxrf.errors import MaxrfError
from maxrf.io.atomic import atomic_write

started: list[ServerInfo] = []  # the servers this process started (for a one-line notice)
USER_SERVER = "http://127.0.0.1:4200/api"  # `prefect server start` with its defaults
PREFERRED_PORT = 4242
START_TIMEOUT_S = 120.0


def maxrf_home() -> Path:
    """maxrf's per-user data folder: ``$MAXRF_HOME``, else ``$XDG_DATA_HOME/maxrf``, else
    ``~/.local/share/maxrf``."""
    if os.environ.get("MAXRF_HOME"):
        return Path(os.environ["MAXRF_HOME"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "maxrf"


@dataclass(frozen=True)
class ServerInfo:
    """Where the background server is: its API URL, process id and Prefect home, and what
    identifies that process (its start time and command line: a pid alone may be reused)."""

    url: str
    pid: int
    home: str
    started: float = 0.0  # the process's start time (psutil's create_time)
    cmdline: tuple[str, ...] = ()

    @classmethod
    def load(cls) -> ServerInfo | None:
        """The recorded server, or None when there is no readable record."""
        try:
            data = json.loads(_state_file().read_text())
            data["cmdline"] = tuple(data.get("cmdline", ()))
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None

    def save(self) -> None:
        record = {**self.__dict__, "cmdline": list(self.cmdline)}
        atomic_write(_state_file(), lambda tmp: Path(tmp).write_text(json.dumps(record)))

    @property
    def ui(self) -> str:
        return self.url.removesuffix("/api")


def _folder() -> Path:
    return maxrf_home() / "prefect-server"


def _state_file() -> Path:
    return _folder() / "server.json"


def healthy(url: str, timeout: float = 0.5) -> bool:
    """True when a Prefect API answers at ``url``: its ``/health`` says ``true`` and
    ``/admin/version`` gives a version (any other program answering HTTP 200 is not one)."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as r:
            if r.status != 200 or r.read(64).strip() != b"true":
                return False
        with urllib.request.urlopen(f"{url}/admin/version", timeout=timeout) as r:
            version = json.loads(r.read(256))
        return r.status == 200 and isinstance(version, str) and version[:1].isdigit()
    except (OSError, ValueError):
        return False


def check_api_url(url: str, timeout: float = 5.0) -> str:
    """A user's ``PREFECT_API_URL``, checked before Prefect uses it: one line when it is not a
    URL or no Prefect server answers there (instead of Prefect's long tracebacks)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise MaxrfError(f"PREFECT_API_URL={url!r} is not an http(s) URL of a Prefect API "
                         "(e.g. http://127.0.0.1:4200/api); fix it or unset it")
    if not healthy(url.rstrip("/"), timeout):
        raise MaxrfError(f"PREFECT_API_URL={url}: no Prefect server answers there; start it, "
                         "fix the variable, or unset it to use maxrf's own server")
    return url


def _alive(pid: int) -> bool:
    """True while our own child ``pid`` exists (used only for a process we started)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # not ours to signal
    return True


def _identity(pid: int) -> tuple[float, tuple[str, ...]] | None:
    """(start time, command line) of a process, None when it is gone or not ours to inspect."""
    try:
        proc = psutil.Process(pid)
        return proc.create_time(), tuple(proc.cmdline())
    except (psutil.Error, OSError):
        return None


def is_ours(info: ServerInfo) -> bool:
    """True only when the recorded pid is still the very process maxrf started: same start time
    and command line (a pid reused by another program after a reboot or a crash is not)."""
    found = _identity(info.pid)
    if found is None or not info.started or not info.cmdline:
        return False
    started, cmdline = found
    return abs(started - info.started) < 0.05 and cmdline == info.cmdline


def current() -> ServerInfo | None:
    """The background server, when its recorded process is still the one maxrf started and it
    answers as a Prefect server."""
    info = ServerInfo.load()
    if info is not None and is_ours(info) and healthy(info.url):
        return info
    return None


def _free_port() -> int:
    for port in (PREFERRED_PORT, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise MaxrfError("no free TCP port on 127.0.0.1 for the Prefect server")


def start(timeout: float = START_TIMEOUT_S) -> ServerInfo:
    """Start the background server unless it runs already (one at a time, whoever asks)."""
    folder = _folder()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second command waits, then finds it running
        info = current()
        if info is not None:
            return info
        port = _free_port()
        env = {
            **os.environ,
            "PREFECT_HOME": str(folder),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",
        }
        env.pop("PREFECT_API_URL", None)
        with open(folder / "server.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start",
                 "--host", "127.0.0.1", "--port", str(port)],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=folder,
            )  # fmt: skip
        url = f"http://127.0.0.1:{port}/api"
        deadline = time.monotonic() + timeout
        while not healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                _kill(proc.pid)
                raise MaxrfError(
                    f"{folder / 'server.log'}: the Prefect server did not start "
                    "(set MAXRF_SERVER=temporary to use a temporary one)"
                )
            time.sleep(0.25)
        # its identity once it answers: right after Popen the child may not have exec'd yet
        # and would still show this process's command line
        started, cmdline = _identity(proc.pid) or (0.0, ())
        info = ServerInfo(url, proc.pid, str(folder), started, cmdline)
        info.save()
        return info


def _kill(pid: int, grace: float = 10.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
        try:
            os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
        except ChildProcessError:
            pass
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)


def stop() -> ServerInfo | None:
    """Stop the background server; returns what was stopped (None when none ran). A record whose
    pid now belongs to another process is only removed: that process is never signalled."""
    info = ServerInfo.load()
    if info is None:
        return None
    running = is_ours(info)
    if running:
        _kill(info.pid)
    _state_file().unlink(missing_ok=True)
    return info if running else None


def use_server(start_if_needed: bool = True) -> str | None:
    """Point Prefect at a server before it is imported; returns the API URL (None: Prefect's
    temporary server). Order: ``PREFECT_API_URL``; ``MAXRF_SERVER=temporary`` opts out; a user's
    own server on the default port; maxrf's background server (started when needed)."""
    if os.environ.get("PREFECT_API_URL"):
        return check_api_url(os.environ["PREFECT_API_URL"])
    if os.environ.get("MAXRF_SERVER", "").lower() == "temporary":
        return None
    info = current()
    url = info.url if info else USER_SERVER if healthy(USER_SERVER, 0.3) else None
    if url is None and start_if_needed:
        started.append(start())
        url = started[-1].url
    if url is not None:
        os.environ["PREFECT_API_URL"] = url
        os.environ.setdefault("PREFECT_UI_URL", url.removesuffix("/api"))
    return url
