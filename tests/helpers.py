"""Helpers of the tests (plain functions; the fixtures are in conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from maxrf.io.rpl import EnergyCalibration, format_rpl

ROOT = Path(__file__).resolve().parents[1]


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


# The session's Prefect server for CLI runs (set by conftest's ``cli_server``): a command that
# runs a flow talks to it as it would to a user's shared server, instead of starting Prefect's
# temporary server each time (≈ 8-15 s a command here).
CLI_ENV: dict[str, str] = {}


# Commands that touch neither Prefect nor a server nor process-wide state: run in the test's
# own process through the same ``maxrf.cli.main`` (exit code, stdout and stderr as a
# subprocess gives them), which saves the ≈ 0.7 s of CPU a new interpreter spends importing.
IN_PROCESS = {"check", "recover", "tree", "info", "export", "repack", "register", "maps",
              "materials", "plot"}


def run_maxrf(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300):
    """Run the ``maxrf`` command line: in a subprocess (against the session's Prefect server
    unless ``env`` chooses one), or in this process for the :data:`IN_PROCESS` commands."""
    if args and str(args[0]) in IN_PROCESS and cwd is None and env is None:
        return _in_process([str(a) for a in args])
    extra = dict(env or {})
    if not {"MAXRF_SERVER", "PREFECT_API_URL"} & extra.keys():
        extra = {**CLI_ENV, **extra}
    return subprocess.run(
        [sys.executable, "-m", "maxrf.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, **extra},
    )


def _in_process(argv: list[str]) -> subprocess.CompletedProcess:
    """``maxrf ARGV`` run by ``maxrf.cli.main`` here: its exit code (argparse's ``SystemExit``
    included) and what it printed; the environment is restored afterwards."""
    import contextlib
    import io

    from maxrf.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(["maxrf", *argv], code, out.getvalue(), err.getvalue())


def wait_for_viewer(url: str, timeout: float = 60.0) -> dict:
    """The viewer's ``/api/info`` once it answers (raises after ``timeout`` seconds)."""
    import time
    import urllib.error
    import urllib.request

    deadline = time.time() + timeout
    while True:
        try:
            return json.loads(urllib.request.urlopen(url + "api/info", timeout=2).read())
        except (OSError, urllib.error.URLError):
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def start_viewer(path: Path, *args: str) -> tuple[str, subprocess.Popen]:
    """``maxrf view PATH --no-browser`` on a free port (and ``args``), once it answers: its
    URL and process (terminate it when done)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "maxrf.cli", "view", str(path),
                             "--no-browser", "--port", str(port), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    wait_for_viewer(url)
    return url, proc


def load_json(text: str) -> dict:
    return json.loads(text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM a process group started with ``start_new_session``; SIGKILL it after ``grace``
    seconds (a Prefect worker finishing a scheduled run can take longer to stop)."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def two_layer_stack(path: Path) -> Path:
    """A small datastack of two layers (``first`` float32 10 x 100, ``second`` int32 5 x 5)."""
    from maxrf.datastack import DataStack

    ds = DataStack(path)
    ds.append(np.arange(1000, dtype=np.float32).reshape(10, 100), "first")
    ds.append(np.ones((5, 5), np.int32), "second")
    return path


def viewer_stack(folder: Path, spec) -> Path:
    """A generated scan through convert, calibrate, hotmax, bands and element maps: what the
    viewer shows."""
    from maxrf.demo import generate_scan
    from maxrf.pipeline import steps
    from maxrf.pipeline.bands import band_layers
    from maxrf.pipeline.convert import convert

    generate_scan(folder / "v", spec)
    convert(folder / "v.raw", progress=False)
    path = folder / "v.datastack"
    steps.calibrate_layers(path, spec.anode)
    steps.hotmax_layers(path)
    band_layers(path, progress=False)
    steps.elementmap_layers(path, progress=False)
    return path
