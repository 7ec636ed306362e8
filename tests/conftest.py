"""Shared fixtures: small generated scans and helpers to run the CLI as a user would."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from maxrf.demo import DemoSpec, generate_scan
from maxrf.rpl import EnergyCalibration, format_rpl

ROOT = Path(__file__).resolve().parents[1]

# Tests never start (and leave running) the shared background Prefect server in the user's data
# folder: CLI runs without the session server get Prefect's temporary one; the test of the
# background server sets its own MAXRF_HOME and stops it.
os.environ.setdefault("MAXRF_SERVER", "temporary")


def write_scan(
    prefix: Path,
    data: np.ndarray,
    dtype: str = "<u2",
    record_by: str = "vector",
    offset: int = 0,
    layout: str = "A",
    energy: EnergyCalibration | None = None,
) -> Path:
    """Write (height, width, channels) ``data`` as a .raw/.rpl pair; returns the .raw path."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(data).astype(dtype)
    body = arr if record_by != "image" else np.moveaxis(arr, -1, 0)
    raw = Path(f"{prefix}.raw")
    raw.write_bytes(b"\xab" * offset + np.ascontiguousarray(body).tobytes())
    h, w, c = arr.shape
    text = format_rpl(w, h, c, dtype, record_by, offset, layout, energy)
    Path(f"{prefix}.rpl").write_bytes(text.encode())
    return raw


@pytest.fixture(scope="session")
def small_scan(tmp_path_factory) -> tuple[Path, dict]:
    """A 40x56x1024-channel demo scan (layout B header) and its truth."""
    prefix = tmp_path_factory.mktemp("scan") / "small"
    truth = generate_scan(
        prefix,
        DemoSpec(height=40, width=56, channels=1024, gain=0.04, offset=-0.5, layout="B", seed=3),
    )
    return Path(f"{prefix}.raw"), truth


def run_maxrf(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300):
    """Run the installed ``maxrf`` command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "maxrf.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def load_json(text: str) -> dict:
    return json.loads(text)


@pytest.fixture(scope="session", autouse=True)
def compiled_kernels():
    """Compile the smoothing kernels once (numba writes them to its on-disk cache), so the many
    CLI subprocesses of the suite load them instead of each compiling its own."""
    from maxrf.smoothing import smooth_reduce

    for dtype in (np.uint16, np.float32):
        smooth_reduce(np.ones((2, 70), dtype), 7, 13)
        smooth_reduce(np.ones((2, 70), dtype), 0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory) -> dict[str, str]:
    """One real local Prefect server (``prefect server start``, its own fresh SQLite database)
    for the session's flow, CLI and deployment tests; yields the environment of its clients.
    Starting it once instead of an ephemeral server per CLI run saves ≈ 13 s per run here."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",  # its UI talks to this port
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
    }
    log = open(home / "server.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    else:
        os.killpg(proc.pid, signal.SIGTERM)
        pytest.fail("prefect server did not start: " + (home / "server.log").read_text()[-2000:])
    yield env
    stop_group(proc)
    log.close()


def stop_group(proc: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM a process group started with ``start_new_session``; SIGKILL it after ``grace``
    seconds (a Prefect worker finishing a scheduled run can take longer to stop)."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
