"""prefect.yaml end to end against a real local Prefect server: create the work pool, deploy,
start a worker, run ``process-scan`` and ``watch-scans`` from their deployments."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from conftest import ROOT, stop_group

from maxrf.datastack import DataStack
from maxrf.demo import DemoSpec, generate_scan

pytestmark = pytest.mark.slow
PREFECT = [sys.executable, "-m", "prefect"]


def run(cmd, env, timeout=180) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, (cmd, res.stdout[-3000:], res.stderr[-3000:])
    return res


def test_deployments_from_prefect_yaml_run_on_a_worker(prefect_server, tmp_path):
    folder = tmp_path / "scans"
    generate_scan(folder / "one", DemoSpec(height=24, width=32, seed=3))
    env = {**prefect_server, "MAXRF_SCAN_FOLDER": str(folder)}
    run([*PREFECT, "work-pool", "create", "maxrf", "--type", "process"], env)
    out = run([*PREFECT, "--no-prompt", "deploy", "--all"], env)
    assert "process-scan" in out.stdout and "watch-scans" in out.stdout
    worker = subprocess.Popen(
        [*PREFECT, "worker", "start", "--pool", "maxrf"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        run(
            [
                *PREFECT,
                "deployment",
                "run",
                "process-scan/process-scan",
                "-p",
                f"raw_path={folder / 'one.raw'}",
                "-p",
                "plots=false",
                "--watch",
            ],
            env,
            300,
        )
        ds = DataStack(folder / "one.datastack")
        assert "hotmax_subpeak_idxs_list" in ds and ds.latest("maxrf_cube") == "maxrf_cube"
        generate_scan(folder / "two", DemoSpec(height=16, width=16, seed=4))
        run(
            [
                *PREFECT,
                "deployment",
                "run",
                "watch-scans/watch-scans",
                "-p",
                "settle_s=0",
                "--watch",
            ],
            env,
            300,
        )
        assert "hotmax_spectra" in DataStack(folder / "two.datastack")
        ledger = (folder / ".maxrf-processed.json").read_text()
        assert "two.raw" in ledger and "one.raw" in ledger
        inspect = run([*PREFECT, "deployment", "inspect", "watch-scans/watch-scans"], env)
        assert "CANCEL_NEW" in inspect.stdout and "interval" in inspect.stdout
    finally:
        stop_group(worker)


def test_maxrf_serve_runs_the_same_deployments(prefect_server, tmp_path):
    """The no-worker path: ``maxrf serve`` serves process-scan and watch-scans itself."""
    folder = tmp_path / "served"
    generate_scan(folder / "three", DemoSpec(height=16, width=24, seed=6))
    serve = subprocess.Popen(
        [sys.executable, "-m", "maxrf.cli", "serve", "--folder", str(folder), "--interval", "3600"],
        env=prefect_server,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            res = subprocess.run(
                [*PREFECT, "deployment", "inspect", "watch-scans/watch-scans"],
                env=prefect_server,
                capture_output=True,
                text=True,
            )
            if res.returncode == 0 and str(folder) in res.stdout:
                break
            time.sleep(1)
        else:
            pytest.fail("maxrf serve did not register its deployments")
        run(
            [
                *PREFECT,
                "deployment",
                "run",
                "process-scan/process-scan",
                "-p",
                f"raw_path={folder / 'three.raw'}",
                "-p",
                "plots=false",
                "--watch",
            ],
            prefect_server,
            300,
        )
        assert "hotmax_spectra" in DataStack(folder / "three.datastack")
    finally:
        stop_group(serve)
