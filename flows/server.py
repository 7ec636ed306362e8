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

from maxrf.atomic import atomic_write
from maxrf.errors import MaxrfError

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
    """Where the background server is: its API URL, process id and Prefect home."""

    url: str
    pid: int
    home: str

    @property
    def ui(self) -> str:
        return self.url.removesuffix("/api")


def _folder() -> Path:
    return maxrf_home() / "prefect-server"


def _state_file() -> Path:
    return _folder() / "server.json"


def healthy(url: str, timeout: float = 0.5) -> bool:
    """True when a Prefect API answers at ``url``."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def current() -> ServerInfo | None:
    """The background server, when it is running and answering."""
    try:
        info = ServerInfo(**json.loads(_state_file().read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if _alive(info.pid) and healthy(info.url):
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
        info = ServerInfo(f"http://127.0.0.1:{port}/api", proc.pid, str(folder))
        deadline = time.monotonic() + timeout
        while not healthy(info.url):
            if proc.poll() is not None or time.monotonic() > deadline:
                _kill(proc.pid)
                raise MaxrfError(
                    f"{folder / 'server.log'}: the Prefect server did not start "
                    "(set MAXRF_SERVER=temporary to use a temporary one)"
                )
            time.sleep(0.25)
        atomic_write(_state_file(), lambda tmp: Path(tmp).write_text(json.dumps(info.__dict__)))
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
    """Stop the background server; returns what was stopped (None when none ran)."""
    try:
        info = ServerInfo(**json.loads(_state_file().read_text()))
    except (OSError, ValueError, TypeError):
        return None
    running = _alive(info.pid)
    if running:
        _kill(info.pid)
    _state_file().unlink(missing_ok=True)
    return info if running else None


def use_server(start_if_needed: bool = True) -> str | None:
    """Point Prefect at a server before it is imported; returns the API URL (None: Prefect's
    temporary server). Order: ``PREFECT_API_URL``; ``MAXRF_SERVER=temporary`` opts out; a user's
    own server on the default port; maxrf's background server (started when needed)."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
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


def use_server_before_prefect() -> None:
    """For Python code that imports a flow module: the same shared server as the CLI, when
    Prefect is not imported yet (its settings are read once) and nothing else is configured."""
    if "prefect" not in sys.modules:
        use_server()
