"""Hostile round 3 (issue #27): each reproduction of the round, through the CLI where it was
found there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, free_port, run_maxrf, two_layer_stack, viewer_stack, wait_for_viewer

from maxrf.datastack import DataStack
from maxrf.errors import DataStackError


@pytest.fixture
def stack(tmp_path) -> Path:
    return two_layer_stack(tmp_path / "s.datastack")


# ---- 1. a leftover journal is never rolled back onto newer content --------------------------
def test_failed_write_to_a_read_only_datastack_leaves_no_journal(stack):
    ds = DataStack(stack)
    before = stack.read_bytes()
    stack.chmod(0o444)
    try:
        if os.access(stack, os.W_OK):  # root: file modes do not stop it; make the open fail
            pytest.skip("file modes do not restrict this user")
        with pytest.raises(DataStackError, match="cannot write .*nothing was written"):
            ds.append(np.zeros(3), "extra")
    finally:
        stack.chmod(0o644)
    assert not ds.journal_path.exists()
    assert stack.read_bytes() == before


def test_failed_open_for_writing_leaves_no_journal(stack, monkeypatch):
    """The same as the read-only case for any user (root ignores file modes): the file cannot
    be opened for writing."""
    import builtins

    ds = DataStack(stack)
    before = stack.read_bytes()
    real_open = builtins.open

    def refuse(file, mode="r", *a, **k):
        if str(file) == str(ds.file) and "+" in mode:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr(builtins, "open", refuse)
    with pytest.raises(DataStackError, match="Permission denied.*nothing was written"):
        ds.append(np.zeros(3), "extra")
    monkeypatch.undo()
    assert not ds.journal_path.exists()
    assert stack.read_bytes() == before


def test_stale_journal_never_cuts_back_a_newer_file(stack, tmp_path):
    """The round's reproduction without permissions: a journal left beside the file (here by a
    real writer killed mid-append), then a newer copy that keeps the file's prefix written over
    it in place (`cp`: same inode). A read-only `tree` must keep the newer layer."""
    from test_hostile import _interrupted_append

    newer = tmp_path / "newer.datastack"
    shutil.copy(stack, newer)
    DataStack(newer).append(np.arange(9), "extra")
    _interrupted_append(stack)
    journal = DataStack(stack).journal_path
    assert journal.exists()
    shutil.copyfile(newer, stack)  # in place, same inode; same bytes before the old directory
    r = run_maxrf("tree", stack)
    assert r.returncode == 0, r.stderr
    assert "extra" in r.stdout and "rolled back" not in r.stderr
    assert stack.read_bytes() == newer.read_bytes()
    np.testing.assert_array_equal(DataStack(stack).read("extra"), np.arange(9))
    assert not journal.exists()


def test_journal_of_a_torn_append_still_rolls_back(stack):
    from test_hostile import _interrupted_append

    before = stack.read_bytes()
    _interrupted_append(stack)
    r = run_maxrf("check", stack)
    assert r.returncode == 0, r.stdout + r.stderr
    assert stack.read_bytes() == before


# ---- 2, 6, 7. the viewer ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def viewed(tmp_path_factory) -> Path:
    from maxrf.demo import DemoSpec

    return viewer_stack(tmp_path_factory.mktemp("hostile3-view"),
                        DemoSpec(height=24, width=32, seed=3, counts=3000))


def _client(path: Path):
    from starlette.testclient import TestClient

    from maxrf.viewer.server import create_app

    return TestClient(create_app(path), base_url="http://127.0.0.1:8765")


@pytest.mark.parametrize("host, ok", [
    ("127.0.0.1:8765", True), ("localhost:8765", True), ("[::1]:8765", True),
    ("attacker.example:8765", False), ("localhost.attacker.example", False), ("", False),
])
def test_viewer_answers_only_its_own_host(viewed, host, ok):
    with _client(viewed) as c:
        r = c.get("/api/info", headers={"Host": host})
    assert (r.status_code == 200) is ok, (host, r.status_code)
    if not ok:
        assert r.status_code == 403 and "datastack" not in r.text


def test_viewer_refuses_other_origins(viewed):
    with _client(viewed) as c:
        assert c.get("/api/info", headers={"Origin": "http://127.0.0.1:8765"}).status_code == 200
        r = c.get("/api/info", headers={"Origin": "http://attacker.example"})
        assert r.status_code == 403
        assert c.get("/", headers={"Origin": "http://evil.example:8765"}).status_code == 403


def test_viewer_serves_the_datastack_as_it_is_now(viewed, tmp_path):
    """A refit while the viewer runs: the next request shows the new maps and elements."""
    from maxrf.pipeline import steps

    path = tmp_path / "v.datastack"
    shutil.copy(viewed, path)
    with _client(path) as c:
        first = c.get("/api/info").json()
        assert len(first["elements"]) > 2
        steps.elementmap_layers(path, elements=["Pb", "Hg"], progress=False)
        info = c.get("/api/info").json()
        assert info["elements"] == ["Pb", "Hg"]
        assert c.get("/api/map.npy", params={"element": "Pb"}).status_code == 200
        other = next(e for e in first["elements"] if e not in ("Pb", "Hg"))
        assert c.get("/api/map.png", params={"element": other}).status_code == 400


def _start_view(path: Path, port: int):
    return subprocess.Popen([sys.executable, "-m", "maxrf.cli", "view", str(path), "--no-browser",
                             "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_view_on_a_busy_port_moves_to_the_next_free_one(viewed, tmp_path):
    import socket

    other = tmp_path / "other.datastack"
    shutil.copy(viewed, other)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = _start_view(other, port)
        try:
            first, second = proc.stdout.readline(), proc.stdout.readline()
            assert f"port {port} is busy" in first, first
            url = second.split(" at ")[1].split()[0]
            assert url != f"http://127.0.0.1:{port}/"
            assert wait_for_viewer(url)["datastack"] == str(other)
        finally:
            proc.terminate()
            proc.wait(timeout=15)


def test_view_port_zero_prints_the_real_port(viewed):
    proc = _start_view(viewed, 0)
    try:
        line = proc.stdout.readline()
        url = line.split(" at ")[1].split()[0]
        assert not url.endswith(":0/")
        wait_for_viewer(url)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_view_bad_port_is_one_line(viewed, port):
    r = run_maxrf("view", viewed, "--no-browser", "--port", port)
    assert r.returncode == 2 and "TCP port" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_convert_view_process_maps_compute_every_step_once(tmp_path):
    """`convert` (the band layers in its pass) → `view` → `process` → `maps --export`: one
    runner with the cache in the core, so every step is computed once whatever command asked
    for it."""
    from maxrf.demo import DemoSpec, generate_scan

    generate_scan(tmp_path / "b", DemoSpec(height=16, width=16, seed=2))
    assert run_maxrf("convert", tmp_path / "b.raw").returncode == 0
    stack = tmp_path / "b.datastack"
    assert DataStack(stack).attrs("maxrf_bandcumsum")["maxrf"]["pass"] == "convert"
    proc = _start_view(stack, free_port())
    try:
        first = proc.stdout.readline()
        assert "building" not in first and "maxrf viewer of" in first, first
        wait_for_viewer(first.split(" at ")[1].split()[0])
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    r = run_maxrf("process", tmp_path / "b.raw", "--no-plots")
    assert r.returncode == 0, r.stderr
    r = run_maxrf("maps", stack, "--export", tmp_path / "out")
    assert r.returncode == 0 and "using the element maps" in r.stdout, r.stdout + r.stderr
    assert (tmp_path / "out" / "elementmaps.tif").exists()
    names = DataStack(stack).layers
    assert not [n for n in names if n.endswith("_")], names  # no second version of any layer
    assert names.count("maxrf_bandcumsum") == 1 and names.count("maxrf_elementmaps") == 1


# ---- 3. `maxrf server stop/status` never trust a bare pid ----------------------------------
def _record_server(home: Path, pid: int, url: str, started: float, cmdline: list[str]) -> None:
    import json

    folder = home / "prefect-server"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "server.json").write_text(json.dumps(
        {"url": url, "pid": pid, "home": str(folder), "started": started, "cmdline": cmdline}))


@pytest.mark.parametrize("record", ["old-format", "other-start", "other-command"])
def test_server_stop_never_kills_a_stranger(tmp_path, record):
    import psutil

    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                                start_new_session=True)
    try:
        me = psutil.Process(stranger.pid)
        started, cmdline = me.create_time(), me.cmdline()
        if record == "old-format":
            started, cmdline = 0.0, []
        elif record == "other-start":
            started -= 3600
        else:
            cmdline = [sys.executable, "-m", "prefect", "server", "start"]
        _record_server(tmp_path, stranger.pid, "http://127.0.0.1:9/api", started, cmdline)
        env = {"MAXRF_HOME": str(tmp_path)}
        status = run_maxrf("server", "status", env=env)
        assert status.returncode == 3 and "no Prefect server running" in status.stdout
        stop = run_maxrf("server", "stop", env=env)
        assert stop.returncode == 0 and "no Prefect server running" in stop.stdout, stop.stdout
        time.sleep(0.3)
        assert stranger.poll() is None  # still alive: never signalled
        assert not (tmp_path / "prefect-server" / "server.json").exists()
    finally:
        stranger.kill()
        stranger.wait()


class _NotPrefect:
    """Any program answering HTTP 200 with a page on every path."""

    def __enter__(self):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                body = b"<html>hello</html>"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api"
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_program_answering_200_is_no_prefect_server():
    from flows.server import healthy

    with _NotPrefect() as other:
        assert not healthy(other.url)


def test_server_status_does_not_vouch_for_a_foreign_server_on_the_port(tmp_path):
    """The recorded process is gone; whatever answers on its port is not maxrf's server."""
    with _NotPrefect() as other:
        _record_server(tmp_path, 2**22 - 1, other.url, 1.0, ["prefect"])
        r = run_maxrf("server", "status", env={"MAXRF_HOME": str(tmp_path)})
        assert r.returncode == 3, r.stdout


# ---- 10. Prefect connection failures are one line --------------------------------------------
@pytest.fixture(scope="module")
def tiny_scan(tmp_path_factory) -> Path:
    from maxrf.demo import DemoSpec, generate_scan

    folder = tmp_path_factory.mktemp("hostile3-scan")
    generate_scan(folder / "t", DemoSpec(height=8, width=8, seed=1))
    return folder / "t.raw"


@pytest.mark.parametrize("url", ["dead", "not a url", "http://127.0.0.1:99999/api",
                                 "ftp://127.0.0.1/api", "not-prefect"])
def test_bad_prefect_api_url_is_one_line(tiny_scan, tmp_path, url):
    with _NotPrefect() as other:
        if url == "dead":
            url = f"http://127.0.0.1:{free_port()}/api"
        elif url == "not-prefect":
            url = other.url
        r = run_maxrf("process", tiny_scan, "-o", tmp_path / "x.datastack", "--no-plots",
                      env={"PREFECT_API_URL": url, "MAXRF_HOME": str(tmp_path)}, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "PREFECT_API_URL" in r.stderr
    assert not (tmp_path / "x.datastack").exists()


# ---- 4. one glitch pixel does not make the scan unmappable ------------------------------------
def test_a_constant_pixel_is_excluded_not_fatal(tmp_path):
    from helpers import write_scan

    from maxrf.demo import DemoSpec, generate_scan
    from maxrf.io.rpl import read_rpl

    generate_scan(tmp_path / "g", DemoSpec(height=24, width=24, seed=4))
    header = read_rpl(tmp_path / "g.rpl")
    data = np.fromfile(tmp_path / "g.raw", "<u2").reshape(header.shape)
    data[5, 7, :] = 900  # a read-out glitch: the same count in every channel
    data[20, 0, :] = 65535
    raw = write_scan(tmp_path / "bad", data, energy=header.energy, layout="B")
    from maxrf.errors import DataWarning
    from maxrf.pipeline import steps
    from maxrf.pipeline.convert import convert

    with pytest.warns(DataWarning, match=r"2 pixel\(s\) hold the same count.*\(5, 7\)"):
        convert(raw, progress=False)
    path = tmp_path / "bad.datastack"
    steps.calibrate_layers(path, "Rh")
    steps.hotmax_layers(path)
    steps.elementmap_layers(path, progress=False)
    ds = DataStack(path)
    assert any("read-out glitch" in w for w in ds.attrs("maxrf_cube")["maxrf"]["warnings"])
    assert ds.attrs("maxrf_cube")["maxrf"]["bad_pixels"] == [[5, 7], [20, 0]]
    np.testing.assert_array_equal(ds.read("maxrf_raw")[5, 7], 900)  # the counts are kept
    assert not ds.read("maxrf_cube")[5, 7].any()
    maps = ds.read("maxrf_elementmaps")
    assert maps.shape[0] >= 3 and not maps[:, 5, 7].any() and not maps[:, 20, 0].any()
    assert "hotmax_spectra" in ds


# ---- 5, 11. the tube: voltages and the anode's own element ------------------------------------
@pytest.mark.parametrize("args, words", [
    (["--anode", "17.4", "--tube-kv", "-5"], "tube voltage -5.0 kV is out of range"),
    (["--tube-kv", "0"], "out of range"),
    (["--elements", "Rh,Fe"], "Rh is the tube's anode"),
    (["--anode", "W", "--add-elements", "W"], "W is the tube's anode"),
])
def test_tube_parameters_are_checked_before_any_work(tiny_scan, tmp_path, args, words):
    out = tmp_path / "never.datastack"
    r = run_maxrf("process", tiny_scan, "-o", out, "--no-plots", *args,
                  env={"MAXRF_SERVER": "temporary"})
    assert r.returncode == 2 and words in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("anode, kv", [("Rh", 12.0), ("Mo", 15.0)])
def test_low_voltage_scans_are_mapped(tmp_path, anode, kv):
    """Below the anode's K (W: L) edge the tube shows its lower series (or only continuum);
    the chain calibrates (header axis kept when the landmarks are too few) and maps."""
    from maxrf.demo import DemoSpec, generate_scan
    from maxrf.pipeline import steps
    from maxrf.pipeline.convert import convert

    generate_scan(tmp_path / "lk", DemoSpec(height=20, width=20, anode=anode, tube_kv=kv,
                                            layout="B", seed=5))
    convert(tmp_path / "lk.raw", progress=False)
    path = tmp_path / "lk.datastack"
    steps.calibrate_layers(path, anode, tube_kv=kv)
    steps.hotmax_layers(path)
    steps.elementmap_layers(path, anode, kv, progress=False)
    ds = DataStack(path)
    assert ds.attrs("maxrf_energies")["calibration"]["tube_kv"] == kv
    elements = ds.attrs("maxrf_elementmaps")["elements"]
    truth = np.load(tmp_path / "lk.truth.npz")
    # elements whose main line lies among the tube's own scattered lines (Ar and K under Rh L)
    # need 3x the significance; the others must all be there
    from maxrf.xrf.fit import scatter_zone
    from maxrf.xrf.lines import element_lines
    from maxrf.xrf.model import Instrument

    lo, hi = scatter_zone(Instrument(anode=anode, tube_kv=kv))

    def clear(el: str) -> bool:
        main = max(((e, w) for e, w in element_lines(el, kv).values() if e > 1.0),
                   key=lambda x: x[1], default=(0.0, 0.0))[0]
        return not lo - 0.2 <= main <= hi + 0.2

    strong = {str(e) for e, m in zip(truth["elements"], truth["maps"], strict=True)
              if m.mean() >= 20 and clear(str(e))}
    assert strong and strong <= set(elements), (strong, elements)
    assert ds.read("maxrf_elementmaps").max() > 0


@pytest.mark.parametrize("args", [["--tube-kv", "10"], ["--anode", "Mo", "--tube-kv", "12"],
                                  ["--anode", "W", "--tube-kv", "6"]])
def test_maps_at_a_voltage_below_the_tube_lines_never_crash(viewed, tmp_path, args):
    path = tmp_path / "v.datastack"
    shutil.copy(viewed, path)
    r = run_maxrf("maps", path, "--refit", *args)
    assert "Traceback" not in r.stderr
    assert r.returncode == 0 or len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_maps_refuses_the_anode_in_one_line(viewed, tmp_path):
    path = tmp_path / "v.datastack"
    shutil.copy(viewed, path)
    r = run_maxrf("maps", path, "--elements", "Rh,Pb")
    assert r.returncode == 2 and "Rh is the tube's anode" in r.stderr
    r = run_maxrf("maps", path, "--rgb", "Pb,Hg", "--colors", "red,nope", "--export",
                  tmp_path / "out")
    assert r.returncode == 2 and "nope" in r.stderr and not (tmp_path / "out").exists()


# ---- 8, 9. members outside the grid, damaged metadata records ---------------------------------
def _rewrite(src: Path, dst: Path, extra=()) -> None:
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for n in zin.namelist():
            zout.writestr(n, zin.read(n))
        for name, data, method in extra:
            zout.writestr(zipfile.ZipInfo(name), data, compress_type=method)


@pytest.mark.parametrize("member, size", [("first/c/9/9", 1 << 30), ("second/c/0/7", 300),
                                          ("first/c/0/0/0", 64)])
def test_members_outside_the_grid_are_damage(stack, tmp_path, member, size):
    import zipfile

    bad = tmp_path / "bad.datastack"
    _rewrite(stack, bad, [(member, b"\0" * size, zipfile.ZIP_DEFLATED)])
    r = run_maxrf("check", bad, timeout=120)
    assert r.returncode == 1 and "outside its chunk grid" in r.stdout, r.stdout + r.stderr
    out = tmp_path / "out.datastack"
    r = run_maxrf("recover", bad, "-o", out, timeout=120)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size < 64 << 10  # nothing inflated into the copy
    assert run_maxrf("check", out).returncode == 0
    np.testing.assert_array_equal(DataStack(out).read("first"), DataStack(stack).read("first"))


def test_a_chunk_larger_than_a_chunk_can_be_is_damage(stack, tmp_path):
    import zipfile

    bad = tmp_path / "big.datastack"
    with zipfile.ZipFile(stack) as zin, zipfile.ZipFile(bad, "w") as zout:
        for n in zin.namelist():
            data = zin.read(n)
            if n == "second/c/0/0":
                data = b"\0" * (8 << 20)  # 8 MiB where a 5 x 5 int32 chunk fits in ~100 B
            zout.writestr(n, data, compress_type=zipfile.ZIP_DEFLATED)
    r = run_maxrf("check", bad)
    assert r.returncode == 1 and "larger than a chunk can be" in r.stdout, r.stdout
    r = run_maxrf("recover", bad, "-o", tmp_path / "o.datastack")
    assert r.returncode == 0 and DataStack(tmp_path / "o.datastack").layers == ["first"]


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x5A
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["central-crc", "central-offset", "central-name",
                                   "local-crc", "local-size", "local-name"])
def test_damaged_metadata_records_are_one_line(stack, tmp_path, where):
    """A damaged `zarr.json` record of one layer: `tree`, `check` and `view` say so in one line
    (no traceback), the API raises a DataStackError, and `check` and `recover` agree."""
    import struct
    import zipfile

    bad = tmp_path / "d.datastack"
    shutil.copy(stack, bad)
    with zipfile.ZipFile(bad) as z:
        info = z.getinfo("second/zarr.json")
        cd = z.start_dir
        names = z.namelist()
    raw = bad.read_bytes()
    entry = raw.find(b"PK\x01\x02", cd)
    while raw[entry + 46: entry + 46 + len(b"second/zarr.json")] != b"second/zarr.json":
        entry = raw.find(b"PK\x01\x02", entry + 4)
    local = info.header_offset
    at = {"central-crc": entry + 16, "central-offset": entry + 42,
          "central-name": entry + 46 + 1, "local-crc": local + 14, "local-size": local + 18,
          "local-name": local + 30 + 1}[where]
    _flip(bad, at)
    assert struct.unpack_from("<I", bad.read_bytes(), 0)[0] == 0x04034B50
    for command in ("tree", "check"):
        r = run_maxrf(command, bad)
        assert "Traceback" not in r.stderr, (command, r.stderr)
        assert r.returncode in (0, 1, 2), (command, r.returncode)
        assert len(r.stderr.strip().splitlines()) <= 1, r.stderr
    check = run_maxrf("check", bad)
    recovered = run_maxrf("recover", bad, "-o", tmp_path / "r.datastack")
    assert recovered.returncode == 0, recovered.stderr
    kept = DataStack(tmp_path / "r.datastack").layers
    # check and recover agree: what recover drops, check reported; a file check passes loses
    # nothing in recover (a damaged directory record of intact data is repaired, not dropped)
    if "second" not in kept:
        assert check.returncode == 1 and "second" in check.stdout, check.stdout
    if check.returncode == 0:
        assert kept == ["first", "second"]
    else:
        assert check.returncode == 1 and "second" in check.stdout
    assert "first" in kept
    try:
        DataStack(bad).read("second")
    except DataStackError:
        pass
    assert names  # the file had both layers


# ---- also found: a preallocated full-size .raw being filled is not complete -------------------
def test_a_preallocated_raw_being_filled_is_not_complete(tmp_path):
    from maxrf.demo import DemoSpec, generate_scan
    from maxrf.io.scans import survey

    generate_scan(tmp_path / "f", DemoSpec(height=16, width=16, seed=2))
    raw = tmp_path / "f.raw"
    data = raw.read_bytes()
    half = len(data) // 2
    raw.write_bytes(data[:half] + bytes(len(data) - half))  # full size, second half zeros
    for p in (raw, tmp_path / "f.rpl"):
        os.utime(p, (time.time() - 60, time.time() - 60))
    status = {s.raw: s for s in survey(tmp_path, settle_s=10)}[str(raw)]
    assert status.state == "incomplete" and "zeros" in status.reason
    sparse = tmp_path / "s.raw"  # a sparse preallocation: nothing written yet
    shutil.copy(tmp_path / "f.rpl", tmp_path / "s.rpl")
    with open(sparse, "wb") as f:
        f.truncate(len(data))
    for p in (sparse, tmp_path / "s.rpl"):
        os.utime(p, (time.time() - 60, time.time() - 60))
    status = {s.raw: s for s in survey(tmp_path, settle_s=10)}[str(sparse)]
    assert status.state == "incomplete", status
    raw.write_bytes(data)  # filled
    os.utime(raw, (time.time() - 60, time.time() - 60))
    assert {s.raw: s for s in survey(tmp_path, settle_s=10)}[str(raw)].state == "complete"


def test_temporaries_of_killed_writers_are_swept(tmp_path):
    from maxrf.io.atomic import STALE_TMP_S, atomic_write

    target = tmp_path / "s.spectra.png"
    old = tmp_path / ".s.spectra.png.abc123.tmp"  # a plot killed mid-write, long ago
    fresh = tmp_path / ".s.spectra.png.def456.tmp"  # another writer, at work now
    other = tmp_path / ".t.png.xyz.tmp"
    for p in (old, fresh, other):
        p.write_bytes(b"")
    past = time.time() - STALE_TMP_S - 60
    os.utime(old, (past, past))
    os.utime(other, (past, past))
    atomic_write(target, lambda tmp: Path(tmp).write_bytes(b"png"))
    assert not old.exists() and fresh.exists() and other.exists()
    assert target.read_bytes() == b"png"


def test_a_second_export_removes_maps_no_longer_made(viewed, tmp_path):
    from maxrf.figures.mapexport import export_all
    from maxrf.pipeline import steps

    path = tmp_path / "v.datastack"
    shutil.copy(viewed, path)
    out = tmp_path / "maps"
    first = {p.name for p in export_all(path, out)}
    steps.elementmap_layers(path, elements=["Pb", "Fe"], progress=False)
    second = {p.name for p in export_all(path, out)}
    on_disk = {p.name for p in out.iterdir()} - {"maxrf-export.json"}
    assert on_disk == second and first - second, (first, second)
    (out / "mine.txt").write_text("a user's file")
    export_all(path, out)
    assert (out / "mine.txt").exists()  # only files an export made are ever removed
