"""Shared fixtures: small generated scans, compiled kernels, one real Prefect server per session.
Plain helpers are in helpers.py."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import helpers
import numpy as np
import pytest
from helpers import free_port

from maxrf.demo import DemoSpec, generate_scan

# Tests never start (and leave running) the shared background Prefect server in the user's data
# folder: CLI runs without the session server get Prefect's temporary one; the test of the
# background server sets its own MAXRF_HOME and stops it.
os.environ.setdefault("MAXRF_SERVER", "temporary")
# One BLAS thread per test process: set here, in the controller, before it starts the xdist
# workers (they and every CLI subprocess inherit it before their numpy loads). Two workers on two
# cores already use both; OpenBLAS threads spinning against each other (and against dask's and
# numba's) made the CPU-bound tests ≈ 2× slower (tests/test_real_spectra.py 71.6 s -> 33.2 s).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


@pytest.fixture(scope="session")
def small_scan(tmp_path_factory) -> tuple[Path, dict]:
    """A 40x56x1024-channel demo scan (layout B header) and its truth."""
    prefix = tmp_path_factory.mktemp("scan") / "small"
    truth = generate_scan(
        prefix,
        DemoSpec(height=40, width=56, channels=1024, gain=0.04, offset=-0.5, layout="B", seed=3),
    )
    return Path(f"{prefix}.raw"), truth






@pytest.fixture(scope="session", autouse=True)
def compiled_kernels():
    """Compile the smoothing kernels once (numba writes them to its on-disk cache), so the many
    CLI subprocesses of the suite load them instead of each compiling its own."""
    from maxrf.xrf.smoothing import smooth_reduce

    for dtype in (np.uint16, np.float32):
        smooth_reduce(np.ones((2, 70), dtype), 7, 13)
        smooth_reduce(np.ones((2, 70), dtype), 0)




SHARED = "MAXRF_TEST_SHARED_DIR"  # set by the controller; its xdist workers inherit it


def pytest_configure(config) -> None:
    """The controller (or a run without xdist) makes the folder its workers share and starts
    the run's one Prefect server there."""
    if not hasattr(config, "workerinput"):
        config.maxrf_shared = tempfile.mkdtemp(prefix="maxrf-tests-")
        os.environ[SHARED] = config.maxrf_shared
        # started now, while the workers start and collect: every test uses it (cli_server)
        state = _start_server(Path(config.maxrf_shared) / "prefect-home")
        (Path(config.maxrf_shared) / "server.json").write_text(json.dumps(state))


def pytest_unconfigure(config) -> None:
    """The controller stops the shared server when every worker is done."""
    shared = getattr(config, "maxrf_shared", None)
    if not shared:
        return
    state = Path(shared) / "server.json"
    if state.exists():
        pid = json.loads(state.read_text())["pid"]
        with contextlib.suppress(ProcessLookupError):  # a test server: no need to wait long
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                os.killpg(pid, 0)  # raises once the group is gone
                time.sleep(0.2)
            os.killpg(pid, signal.SIGKILL)
    shutil.rmtree(shared, ignore_errors=True)


def _start_server(home: Path) -> dict:
    """``prefect server start`` on a free port with its own fresh SQLite database, detached (its
    own process group, stopped by the controller); returns its pid and its clients' settings."""
    port = free_port()
    env = {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",  # its UI talks to this port
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
    }
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "server.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
             "--port", str(port)],
            env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return {"pid": proc.pid, "env": env}


@pytest.fixture(scope="session")
def prefect_server() -> dict[str, str]:
    """One real local Prefect server (``prefect server start``, its own fresh SQLite database)
    for the whole run's flow, CLI and deployment tests, started by the controller
    (:func:`pytest_configure`) and shared by the xdist workers; returns the environment of its
    clients once it answers. One server instead of one per worker saves its start (≈ 14 s of
    CPU) and its idle load (≈ 5 s of CPU a minute); one instead of an ephemeral server per CLI
    run ≈ 13 s per run."""
    server = json.loads((Path(os.environ[SHARED]) / "server.json").read_text())
    env = {**os.environ, **server["env"]}
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{env['PREFECT_API_URL']}/health", timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    else:
        log = Path(env["PREFECT_HOME"]) / "server.log"
        pytest.fail("prefect server did not start: " + log.read_text()[-2000:])
    return env


@pytest.fixture(scope="session", autouse=True)
def cli_server(prefect_server):
    """CLI runs of the session (``helpers.run_maxrf``) use the session's Prefect server."""
    keys = ("PREFECT_HOME", "PREFECT_API_URL", "PREFECT_UI_API_URL",
            "PREFECT_SERVER_ANALYTICS_ENABLED")
    helpers.CLI_ENV.update({k: prefect_server[k] for k in keys})
    yield
    helpers.CLI_ENV.clear()


# The longest tests first (longest-processing-time-first scheduling): a two-minute test that
# starts last keeps one worker busy alone at the end of the run.
FIRST = ("tests/test_deployment.py", "tests/test_flows.py")


def pytest_collection_modifyitems(session, config, items) -> None:
    def rank(item) -> int:
        path = item.nodeid.split("::")[0]
        return FIRST.index(path) if path in FIRST else len(FIRST)

    items.sort(key=rank)  # stable: each module keeps its own order
