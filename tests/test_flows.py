"""Real Prefect: cached reruns, parameter changes, wiped database, SIGKILL and resume, concurrent
runs, the folder watcher. In-process runs and most "another process" runs (the CLI with its own
PREFECT_HOME, i.e. its own result storage) use the session's real local Prefect server; the
wiped-database run gets its own temporary server and fresh SQLite database."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT

from maxrf.datastack import DataStack, repack
from maxrf.demo import DemoSpec, generate_scan
from maxrf.io.raw import open_scan
from maxrf.pipeline import runner
from maxrf.pipeline import table as pipeline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_api(prefect_server, tmp_path_factory):
    """In-process flow runs against the session's real local Prefect server."""
    from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    updates = {
        PREFECT_API_URL: prefect_server["PREFECT_API_URL"],
        PREFECT_LOCAL_STORAGE_PATH: str(tmp_path_factory.mktemp("results")),
    }
    with temporary_settings(updates=updates):
        yield


@pytest.fixture
def scan(tmp_path) -> Path:
    generate_scan(tmp_path / "scan", DemoSpec(height=40, width=48, seed=2, layout="B"))
    return tmp_path / "scan.raw"


def entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def cached(result: dict) -> dict[str, bool]:
    return {s["step"]: s["cached"] for s in result["steps"]}


def test_rerun_is_cached_and_byte_identical(prefect_api, scan):
    from flows.process_scan import process_scan

    first = process_scan(str(scan), plots=False)
    assert not any(cached(first).values())
    before = scan.with_suffix(".datastack").read_bytes()
    second = process_scan(str(scan), plots=False)
    assert all(cached(second).values()) and len(cached(second)) == len(pipeline.chain())
    assert scan.with_suffix(".datastack").read_bytes() == before
    # the tasks ran the table's steps, in its order, with the keys the table gives
    keys = pipeline.chain_keys(open_scan(scan).key(), {})
    assert [(s["step"], s["key"]) for s in first["steps"]] == [
        (s.name, keys[s.name]) for s in pipeline.chain()]
    ref = runner.Scan.open(scan)
    assert runner.cached_chain(scan.with_suffix(".datastack"), ref, {})
    assert not runner.cached_chain(scan.with_suffix(".datastack"), ref, {"sigma": 5.0})


def test_runs_publish_artifacts(prefect_api, scan):
    """The UI shows the datastack tree, steps with timings, calibration and the peak table."""
    import asyncio
    import json

    from prefect import get_client

    from flows.process_scan import process_scan

    process_scan(str(scan))

    async def artifacts():
        async with get_client() as client:
            return await client.read_artifacts()

    from tasks.report import artifact_key

    found = {a.key: a for a in asyncio.run(artifacts()) if a.key}
    key = {w: artifact_key(str(scan.with_suffix(".datastack")), w) for w in (
        "layers", "steps", "summary", "hotmax-peaks", "plot-calibration", "plot-hotmax",
        "plot-spectra", "plot-elementmaps")}
    for k in key.values():
        assert k in found, sorted(found)
    assert key["layers"].startswith("layers-scan-")  # what it is first, then the scan
    summary = str(found[key["summary"]].data)
    assert "Energy calibration" in summary and "## Element maps" in summary and "| Pb |" in summary
    # read in the order a scientist reads: elements, then the axis, then the layers
    assert (summary.index("## Element maps") < summary.index("Energy calibration")
            < summary.index("## Layers"))
    assert "maxrf view " in summary
    assert "maxrf_cube" in str(found[key["layers"]].data)
    assert "duration_s" in str(found[key["steps"]].data)
    peaks = str(found[key["hotmax-peaks"]].data)
    assert "pixel" in peaks and "Rayleigh" in peaks
    labels = [row["lines"] for row in json.loads(peaks)]
    assert any("Pb Lα" in x for x in labels), labels  # named by the mapped elements' lines
    plot = found[key["plot-spectra"]]
    assert plot.type == "markdown" and "](data:image/png;base64," in str(plot.data)
    # A cached rerun draws nothing again: each PNG carries the key it was drawn for.
    pngs = sorted(scan.parent.glob("scan.*.png"))
    assert len(pngs) == 4
    before = {p: p.stat().st_mtime_ns for p in pngs}
    process_scan(str(scan))
    assert {p: p.stat().st_mtime_ns for p in pngs} == before
    # ... and a person sees the plot inside the Prefect UI (not a file:// link).
    _see_plot_in_ui(_api_url(), plot.id, scan.parent)  # the settings prefect_api set


def _api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def _see_plot_in_ui(api: str, artifact_id, folder: Path) -> None:
    from browser import browser
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser()
    try:
        driver.get(f"{api.removesuffix('/api')}/artifacts/artifact/{artifact_id}")
        shown = WebDriverWait(driver, 60).until(
            lambda d: [
                img for img in d.find_elements(By.CSS_SELECTOR, "img[src^='data:image/png']")
                if d.execute_script("return arguments[0].naturalWidth", img) > 100
                and img.size["width"] > 100
            ]
        )
        assert shown
        out = ROOT / "test-artifacts"
        out.mkdir(exist_ok=True)
        driver.save_screenshot(str(out / "prefect-ui-plot.png"))
    finally:
        driver.quit()


def test_parameter_change_recomputes_downstream_only(prefect_api, scan):
    from flows.process_scan import process_scan

    process_scan(str(scan), plots=False)
    changed = process_scan(str(scan), plots=False, prominence=2.0)
    assert cached(changed) == {
        "convert": True,
        "calibrate": True,
        "hotmax": False,
        "hotmax-noise": False,
        "subpeaks": False,
        "bands": True,
        "element-maps": False,
        "materials": False,
    }
    ds = DataStack(scan.with_suffix(".datastack"))
    assert (
        ds.latest("hotmax_spectra") == "hotmax_spectra_" and ds.latest("maxrf_cube") == "maxrf_cube"
    )
    back = process_scan(str(scan), plots=False)  # the first parameters' layers are still there
    assert all(cached(back).values())


def test_changed_elements_recompute_only_the_maps(prefect_api, scan):
    from flows.process_scan import process_scan

    first = process_scan(str(scan), plots=False)
    auto = DataStack(scan.with_suffix(".datastack")).attrs("maxrf_elementmaps")["elements"]
    changed = process_scan(str(scan), plots=False, elements=["Pb", "Fe", "Hg"])
    assert cached(changed) == {step: step not in ("element-maps", "materials")
                               for step in cached(first)}
    ds = DataStack(scan.with_suffix(".datastack"))
    assert ds.attrs("maxrf_elementmaps")["elements"] == ["Pb", "Fe", "Hg"]
    assert ds.read("nmf_atomnums").tolist() == [82, 26, 80]
    again = process_scan(str(scan), plots=False)  # automatic choice: its layers still exist
    assert all(cached(again).values())
    assert "Pb" in auto and "Fe" in auto


def test_deleted_layer_is_recomputed(prefect_api, scan):
    from flows.process_scan import process_scan

    process_scan(str(scan), plots=False)
    ds = DataStack(scan.with_suffix(".datastack"))
    keep = [n for n in ds.layers if not n.startswith("hotmax_noiselines")]
    repack(ds, select=[n for n in keep if n not in ("hotmax_baselines",)])
    again = process_scan(str(scan), plots=False)
    assert cached(again)["hotmax-noise"] is False and cached(again)["hotmax"] is True
    assert "hotmax_noiselines" in DataStack(scan.with_suffix(".datastack"))


def test_watcher_processes_each_complete_scan_once(prefect_api, tmp_path):
    from flows.watch_scans import watch_scans

    folder = tmp_path / "incoming"
    generate_scan(folder / "a", DemoSpec(height=16, width=20, seed=1))
    generate_scan(folder / "b", DemoSpec(height=16, width=20, seed=2))
    full_b = (folder / "b.raw").read_bytes()
    (folder / "b.raw").write_bytes(full_b[: len(full_b) // 2])  # still being written
    (folder / "c.raw").write_bytes(b"\0" * 100)
    (folder / "c.rpl").write_text("width\tten\n")  # a bad header
    fast = {"plots": False, "maps": False}  # what is watched here, not the maps or plots
    first = watch_scans(str(folder), settle_s=0, **fast)
    assert [Path(p).name for p in first["processed"]] == ["a.raw"]
    assert [Path(w["raw"]).name for w in first["waiting"]] == ["b.raw"]
    assert [Path(b["raw"]).name for b in first["bad"]] == ["c.raw"]
    second = watch_scans(str(folder), settle_s=0, **fast)
    assert second["processed"] == [] and [Path(p).name for p in second["already"]] == ["a.raw"]
    (folder / "b.raw").write_bytes(full_b)  # the scan finished
    unsettled = watch_scans(str(folder), settle_s=3600, **fast)
    assert unsettled["processed"] == []
    third = watch_scans(str(folder), settle_s=0, **fast)
    assert [Path(p).name for p in third["processed"]] == ["b.raw"]
    assert DataStack(folder / "b.datastack").latest("maxrf_cube") == "maxrf_cube"
    assert DataStack(folder / "a.datastack").latest("maxrf_cube") == "maxrf_cube"


def cli(
    *args, home: Path, server: dict | None = None, env: dict | None = None, **kw
) -> subprocess.Popen:
    """The CLI in another process with its own PREFECT_HOME (result storage; its own temporary
    Prefect server and SQLite database unless ``server``, the session's server, is given)."""
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        **(env or {}),
    }
    env.pop("PREFECT_API_URL", None)
    if server is not None:
        env["PREFECT_API_URL"] = server["PREFECT_API_URL"]
    return subprocess.Popen(
        [sys.executable, "-m", "maxrf.cli", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        **kw,
    )


def test_wiped_database_keeps_the_layer_cache(scan, tmp_path, prefect_server):
    first = cli("process", scan, "--no-plots", home=tmp_path / "home1", server=prefect_server)
    out1, err1 = first.communicate(timeout=300)
    assert first.returncode == 0, err1[-3000:]
    assert "computed" in out1
    before = entries(scan.with_suffix(".datastack"))
    # A fresh database and result storage (no server configured: the CLI starts its shared
    # background server, with its own new database): the flow runs and every task ends "Cached"
    # from the keys in the layers' attributes.
    shared = {"MAXRF_HOME": str(tmp_path / "maxrf-home"), "MAXRF_SERVER": ""}
    status = cli("server", "status", home=tmp_path / "home2", env=shared)
    assert status.wait(timeout=60) == 3  # none yet
    try:
        second = cli("process", scan, "--no-plots", "--rerun", home=tmp_path / "home2", env=shared)
        out2, err2 = second.communicate(timeout=300)
        assert second.returncode == 0, err2[-3000:]
        steps = [line for line in out2.splitlines() if line.startswith("  step")]
        assert len(steps) == len(pipeline.chain()) and all(line.endswith("cached")
                                                           for line in steps)
        assert "the run in the Prefect UI: http://127.0.0.1:" in out2
        assert "started a Prefect server for maxrf in the background" in out2
        assert entries(scan.with_suffix(".datastack")) == before
        # ... and the next command reuses it (no second server; its database holds both runs).
        status = cli("server", home=tmp_path / "home2", env=shared)
        text, _ = status.communicate(timeout=60)
        assert status.returncode == 0 and "Prefect server running: http://127.0.0.1:" in text
        url = text.split()[3] + "/api"
        again = cli("convert", scan, "--rerun", home=tmp_path / "home2", env=shared)
        out, err = again.communicate(timeout=300)
        assert again.returncode == 0 and f"({url})" in out, (out, err[-2000:])
        assert "started a Prefect server" not in out
        import httpx

        runs = httpx.post(f"{url}/flow_runs/filter", json={}).json()
        assert sorted(r["name"] for r in runs) == ["convert-scan: scan", "process-scan: scan"]
    finally:
        stop = cli("server", "stop", home=tmp_path / "home2", env=shared)
        text, _ = stop.communicate(timeout=60)
    assert "stopped the Prefect server" in text
    assert cli("server", home=tmp_path / "home2", env=shared).wait(timeout=60) == 3
    # Without --rerun and with no server, a fully cached rerun does not even start Prefect.
    t0 = time.monotonic()
    third = cli(
        "process", scan, "--no-plots", home=tmp_path / "home3", env={"MAXRF_SERVER": "temporary"}
    )
    out3, _ = third.communicate(timeout=300)
    assert third.returncode == 0 and "every step is cached: nothing to run" in out3
    assert time.monotonic() - t0 < 15  # imports only (≈4-7 s on this 2-core VM, under load more)
    assert not (tmp_path / "home3" / "prefect.db").exists()


def test_sigkill_mid_flow_then_resume_equals_uninterrupted(tmp_path, prefect_server):
    generate_scan(tmp_path / "k", DemoSpec(height=112, width=112, seed=5))
    raw = tmp_path / "k.raw"
    out = tmp_path / "k.datastack"
    proc = cli("process", raw, "--no-plots", home=tmp_path / "h1", server=prefect_server)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if "maxrf_maxpixels" in DataStack(out).layers:
                break
        except Exception:
            pass
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert "maxrf_cube" in DataStack(out).layers
    resumed = cli("process", raw, "--no-plots", home=tmp_path / "h1", server=prefect_server)
    text, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert "step convert       cached" in text
    shutil.copy(raw, tmp_path / "ref.raw")
    shutil.copy(raw.with_suffix(".rpl"), tmp_path / "ref.rpl")
    # the uninterrupted reference: the same runner the tasks call, without Prefect
    from maxrf.pipeline.runner import process

    process(tmp_path / "ref.raw")
    a, b = DataStack(out), DataStack(tmp_path / "ref.datastack")
    assert a.layers == b.layers and all(not n.endswith("_") for n in a.layers)
    for name in a.layers:
        if name.startswith(("maxrf_elementmaps", "nmf_")):
            # fitted in float32 with BLAS in the loop: the last bit may differ between
            # processes (thread counts), nothing more
            np.testing.assert_allclose(a.read(name), b.read(name), rtol=1e-4, atol=1e-3,
                                       err_msg=name)
        else:
            np.testing.assert_array_equal(a.read(name), b.read(name), err_msg=name)


def test_two_runs_at_once_compute_each_layer_once(scan, tmp_path, prefect_server):
    runs = [
        cli("process", scan, "--no-plots", home=tmp_path / f"c{i}", server=prefect_server)
        for i in range(2)
    ]
    outs = [r.communicate(timeout=300) for r in runs]
    assert all(r.returncode == 0 for r in runs), [o[1][-2000:] for o in outs]
    layers = DataStack(scan.with_suffix(".datastack")).layers
    assert all(not n.endswith("_") for n in layers) and len(layers) == 29
    assert sum(o[0].count("computed") for o in outs) == len(pipeline.chain())  # each step once


def test_process_and_watch_on_one_new_scan_at_once(tmp_path, prefect_server):
    """A user runs `maxrf process` while the folder watcher picks up the same new scan: both runs
    end Completed (plots, CSV and ledger are written under unique temporary names, then renamed),
    and every layer is computed once."""
    folder = tmp_path / "new"
    generate_scan(folder / "fresh", DemoSpec(height=32, width=40, seed=8))
    runs = [
        cli("process", folder / "fresh.raw", home=tmp_path / "p", server=prefect_server),
        cli("watch", folder, "--once", "--settle", "0", home=tmp_path / "w", server=prefect_server),
    ]
    outs = [r.communicate(timeout=300) for r in runs]
    assert [r.returncode for r in runs] == [0, 0], [o[1][-2000:] for o in outs]
    assert "processed 1" in outs[1][0]
    layers = DataStack(folder / "fresh.datastack").layers
    assert all(not n.endswith("_") for n in layers)
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert len(list(folder.glob("fresh.*.png"))) == 4


def test_run_forms_have_no_none_switches():
    """Every optional parameter of the deployed flows is a plain field of its type with no
    default (the UI's form shows it empty; left empty, the flow's None applies); a parameter
    whose None is a value of its own keeps it."""
    from prefect.utilities.callables import parameter_schema

    from flows.form import form_schema
    from flows.process_scan import process_scan
    from flows.watch_scans import watch_scans

    for flow in (process_scan, watch_scans):
        raw = parameter_schema(flow).model_dump_for_openapi()
        tidy = form_schema(raw)
        props = tidy["properties"]
        assert props["tube_kv"]["type"] == "number" and "default" not in props["tube_kv"]
        assert props["elements"]["type"] == "array" and "anyOf" not in props["elements"]
        assert props["precision_bits"] == raw["properties"]["precision_bits"]  # 13 or lossless
        assert props["sigma"] == raw["properties"]["sigma"]
        assert not [n for n, p in props.items() if p.get("anyOf") and p.get("default") is None
                    and {"type": "null"} in p["anyOf"]]


def test_a_photo_adds_the_registration_step(prefect_api, scan):
    """process-scan with ``photo`` (and control points) runs the register task after the maps;
    a rerun finds its layer by key; a changed photo is registered again."""
    from flows.process_scan import process_scan
    from maxrf.demo import photo_transform, render_photo

    photo = render_photo(scan.with_suffix(""), photo_transform(4.0, 2.0, (30, 20)), (220, 260))
    points = scan.with_suffix(".points.csv")
    first = process_scan(str(scan), plots=False, photo=str(photo), photo_points=str(points))
    assert cached(first)["register"] is False and list(cached(first))[-1] == "register"
    attrs = DataStack(scan.with_suffix(".datastack")).attrs("maxrf_registration")
    assert attrs["photo"]["name"] == photo.name and attrs["method"].startswith("control points")
    again = process_scan(str(scan), plots=False, photo=str(photo), photo_points=str(points))
    assert all(cached(again).values())
    render_photo(scan.with_suffix(""), photo_transform(4.0, 2.0, (31, 20)), (220, 260), seed=1)
    changed = process_scan(str(scan), plots=False, photo=str(photo), photo_points=str(points))
    assert cached(changed)["register"] is False and cached(changed)["element-maps"] is True
