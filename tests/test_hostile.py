"""Hostile files and careless hands (issue #12, first part): nothing may overwrite a file that
is not a datastack, a journal never touches a file it does not belong to, locks belong to the
file (symbolic and hard links), FIFOs and devices are refused at once, bad values give one line."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, run_maxrf, two_layer_stack

from maxrf.datastack import DataStack
from maxrf.demo import DemoSpec, generate_scan
from maxrf.errors import DataStackError, HeaderError, LockTimeoutError
from maxrf.io.rpl import read_rpl


@contextmanager
def lock_held_elsewhere(path: Path, seconds: float = 20):
    """Another writer (a thread) holds the datastack's write lock while the block runs."""
    holding, release = threading.Event(), threading.Event()

    def hold():
        with DataStack(path).write_lock():
            holding.set()
            release.wait(seconds)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert holding.wait(10)
        yield
    finally:
        release.set()
        t.join()


@pytest.fixture
def stack(tmp_path) -> Path:
    return two_layer_stack(tmp_path / "a.datastack")


@pytest.fixture
def scan(tmp_path) -> Path:
    generate_scan(tmp_path / "s", DemoSpec(height=8, width=8, channels=256, gain=0.16))
    return tmp_path / "s.raw"


@pytest.mark.parametrize("command", ["recover", "repack"])
def test_recover_and_repack_never_overwrite_a_scan(stack, scan, command):
    before = scan.read_bytes()
    r = run_maxrf(command, stack, "-o", scan)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "is not a datastack; refusing to overwrite it" in r.stderr
    assert scan.read_bytes() == before
    other = scan.with_suffix(".txt")
    other.write_text("notes")
    assert run_maxrf(command, stack, "-o", other).returncode == 2
    assert other.read_text() == "notes"
    assert not list(scan.parent.glob(".*recover-*")) and not list(scan.parent.glob(".*repack-*"))


def test_recover_into_a_missing_folder_names_the_output(stack, tmp_path):
    r = run_maxrf("recover", stack, "-o", tmp_path / "nope" / "x.datastack")
    assert r.returncode == 2 and "x.datastack" in r.stderr and "does not exist" in r.stderr


def test_recover_may_replace_an_older_datastack(stack, tmp_path):
    old = tmp_path / "old.datastack"
    DataStack(old).append(np.zeros(3), "x")
    r = run_maxrf("recover", stack, "-o", old)
    assert r.returncode == 0, r.stderr
    assert DataStack(old).layers == ["first", "second"]


def _interrupted_append(path: Path) -> None:
    """Kill a writer in the middle of an append (a real process, SIGKILL)."""
    code = (
        "import sys,time,numpy as np;from maxrf.datastack import DataStack;"
        "ds=DataStack(sys.argv[1])\n"
        "with ds.appending() as app:\n"
        "  w=app.create('big',(4096,4096),np.float32,chunks=(256,4096))\n"
        "  w.write_region((0,0),np.random.rand(256,4096).astype(np.float32))\n"
        "  print('ready',flush=True);time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert DataStack(path).journal_path.exists()


def test_leftover_journal_never_touches_another_file(stack, tmp_path):
    """A writer dies mid-append; a good datastack is copied over the name; a read-only command
    must not 'roll back' into it."""
    good = tmp_path / "good.datastack"
    DataStack(good).append(np.full((7, 7), 3.0), "good_layer")
    _interrupted_append(stack)
    shutil.copy(good, stack)  # in place: same inode, other content
    before = stack.read_bytes()
    r = run_maxrf("tree", stack)
    assert r.returncode == 0, r.stderr
    assert "good_layer" in r.stdout
    assert stack.read_bytes() == before
    assert run_maxrf("check", stack).returncode == 0
    assert list(tmp_path.glob(".a.datastack.journal.orphan-*"))


def test_own_journal_is_still_rolled_back(stack):
    before = {n: DataStack(stack).read(n) for n in ("first", "second")}
    _interrupted_append(stack)
    ds = DataStack(stack)
    assert ds.layers == ["first", "second"]
    for n, v in before.items():
        np.testing.assert_array_equal(ds.read(n), v)
    assert not ds.journal_path.exists()


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_writers_through_links_share_the_lock(stack, tmp_path, link):
    other = tmp_path / f"{link}.datastack"
    (os.symlink if link == "symlink" else os.link)(stack, other)
    with lock_held_elsewhere(stack):
        with pytest.raises(LockTimeoutError):
            with DataStack(other).write_lock(timeout=0.5):
                pass
    DataStack(other).append(np.zeros(2), "via_link")
    assert "via_link" in DataStack(stack).layers


def test_repack_through_a_symlink_replaces_the_target(stack, tmp_path):
    link = tmp_path / "link.datastack"
    os.symlink(stack, link)
    DataStack(link).append(np.zeros(3), "first")  # a second version: first_
    r = run_maxrf("repack", link)
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and os.readlink(link) == str(stack)
    assert DataStack(stack).layers == ["first", "second"]


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("command", ["tree", "check", "recover", "plot", "maps", "view"])
def test_fifo_datastack_is_refused_at_once(tmp_path, command):
    fifo = _fifo(tmp_path / "f.datastack")
    t = time.monotonic()
    r = run_maxrf(command, fifo, timeout=60)
    assert r.returncode in (1, 2) and time.monotonic() - t < 30
    assert "not a regular file" in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_fifo_and_device_headers_are_refused(tmp_path, scan):
    fifo = _fifo(tmp_path / "f.rpl")
    with pytest.raises(HeaderError, match="not a regular file"):
        read_rpl(fifo)
    link = tmp_path / "z.rpl"
    os.symlink("/dev/zero", link)
    with pytest.raises(HeaderError, match="not a regular file"):
        read_rpl(link)
    big = tmp_path / "big.rpl"
    big.write_bytes(b";" * (2 << 20))
    with pytest.raises(HeaderError, match="too large"):
        read_rpl(big)
    raw = tmp_path / "f.raw"
    shutil.copy(scan, raw)
    r = run_maxrf("convert", raw, timeout=60)
    assert r.returncode == 2 and "not a regular file" in r.stderr


def test_output_to_a_device_is_refused(scan, tmp_path):
    r = run_maxrf("convert", scan, "-o", "/dev/full", timeout=120)
    assert r.returncode == 2 and "not a regular file" in r.stderr, r.stderr
    assert not Path("/dev/.full.lock").exists()


def test_conflicting_duplicate_header_keys(tmp_path, scan):
    rpl = scan.with_suffix(".rpl")
    rpl.write_text(rpl.read_text() + "depth\t128\n")
    with pytest.raises(HeaderError, match="'depth' is given twice"):
        read_rpl(rpl)
    same = tmp_path / "same.rpl"
    text = scan.with_suffix(".rpl").read_text().replace("depth\t128\n", "")
    same.write_text(text + "width\t8\n")  # a repeated key with the same value is harmless
    assert read_rpl(same).width == 8


@pytest.mark.parametrize("args, words", [
    (["--sigma", "1e12"], "sigma: must be a number from 0 to 200 channels"),
    (["--sigma", "nan"], "sigma: must be a number from 0 to 200 channels"),
])
def test_bad_numbers_are_one_line_and_write_nothing(scan, args, words):
    r = run_maxrf("convert", scan, *args, timeout=120)
    assert r.returncode == 2 and words in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not scan.with_suffix(".datastack").exists()


def test_a_file_that_is_no_zip_gets_no_recover_hint(scan, tmp_path):
    notes = tmp_path / "notes.datastack"
    notes.write_text("hello")
    r = run_maxrf("tree", notes)
    assert r.returncode == 2 and "recover" not in r.stderr and "not a zip file" in r.stderr
    r = run_maxrf("convert", scan, "-o", notes, timeout=120)
    assert r.returncode == 2 and "recover" not in r.stderr
    assert notes.read_text() == "hello"
    damaged = tmp_path / "damaged.datastack"
    DataStack(damaged).append(np.zeros(4), "x")
    damaged.write_bytes(damaged.read_bytes()[:-30])
    r = run_maxrf("tree", damaged)
    assert r.returncode == 2 and "maxrf recover" in r.stderr


def test_lock_error_is_a_datastack_error():
    assert issubclass(LockTimeoutError, DataStackError)


def test_damaged_layer_metadata_is_reported_not_a_traceback(stack, tmp_path):
    import zipfile

    bad = tmp_path / "bad.datastack"
    with zipfile.ZipFile(stack) as src, zipfile.ZipFile(bad, "w") as dst:
        for n in src.namelist():
            dst.writestr(n, b"not json {" if n == "second/zarr.json" else src.read(n))
    r = run_maxrf("tree", bad)
    assert r.returncode == 0 and "second" in r.stdout and "damaged metadata" in r.stdout
    assert "Traceback" not in r.stderr
    with pytest.raises(DataStackError, match="damaged metadata"):
        DataStack(bad).read("second")
    np.testing.assert_array_equal(DataStack(bad).read("first"), DataStack(stack).read("first"))
    r = run_maxrf("check", bad)
    assert r.returncode == 1 and "not valid JSON" in r.stdout


@pytest.mark.parametrize("args", [
    ["convert", "x.raw", "--precision-bits", "0"],
    ["convert", "x.raw", "--precision-bits", "25"],
    ["convert", "x.raw", "--precision-bits", "1.5"],
    ["--lock-wait", "abc", "tree", "x.datastack"],
    ["convert"],
    ["no-such-command"],
])
def test_usage_mistakes_are_one_line(args):
    r = run_maxrf(*args)
    assert r.returncode == 2 and r.stderr.startswith("maxrf: error: "), r.stderr
    assert r.stderr.count("\n") == 1 and "usage:" not in r.stderr


def test_lock_wait_is_a_choice(stack):
    with lock_held_elsewhere(stack):
        started = time.monotonic()
        r = run_maxrf("--lock-wait", "1", "repack", stack)
        assert r.returncode == 2 and "gave up after 1 s" in r.stderr, r.stderr
        assert time.monotonic() - started < 30


def test_watcher_identity_is_the_content_not_the_name(tmp_path):
    from maxrf.io.scans import survey

    generate_scan(tmp_path / "a", DemoSpec(height=8, width=8, channels=256, gain=0.16, seed=1))
    raw = tmp_path / "a.raw"
    st = os.stat(raw)
    first = {s.raw: s for s in survey(tmp_path, settle_s=0)}[str(raw)]
    assert first.state == "complete"
    # same name, size and times, other content: a new scan
    data = bytearray(raw.read_bytes())
    data[100:110] = bytes(10)
    raw.write_bytes(bytes(data))
    os.utime(raw, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = {s.raw: s for s in survey(tmp_path, settle_s=0)}[str(raw)]
    assert changed.scan_id != first.scan_id
    # renamed: the same scan
    os.rename(raw, tmp_path / "b.raw")
    os.rename(tmp_path / "a.rpl", tmp_path / "b.rpl")
    renamed = {s.raw: s for s in survey(tmp_path, settle_s=0)}[str(tmp_path / "b.raw")]
    assert renamed.scan_id == changed.scan_id
    # a header alone is reported, not ignored
    (tmp_path / "c.rpl").write_text((tmp_path / "b.rpl").read_text())
    lone = {s.raw: s for s in survey(tmp_path, settle_s=0)}[str(tmp_path / "c.rpl")]
    assert lone.state == "incomplete" and "without its .raw" in lone.reason


def test_watcher_survives_a_fifo_header(tmp_path):
    from maxrf.io.scans import survey

    generate_scan(tmp_path / "good", DemoSpec(height=8, width=8, channels=256, gain=0.16))
    generate_scan(tmp_path / "evil", DemoSpec(height=8, width=8, channels=256, gain=0.16))
    (tmp_path / "evil.rpl").unlink()
    _fifo(tmp_path / "evil.rpl")
    t = time.monotonic()
    states = {Path(s.raw).name: s for s in survey(tmp_path, settle_s=0)}
    assert time.monotonic() - t < 10
    assert states["good.raw"].state == "complete"
    assert states["evil.raw"].state == "bad" and "not a regular file" in states["evil.raw"].reason


def test_full_disk_during_journal_is_a_datastack_error(stack):
    """The API on a full disk: a MaxrfError naming the file, nothing left behind."""
    code = (
        "import resource,signal,sys,numpy as np;from maxrf.datastack import DataStack;"
        "from maxrf.errors import DataStackError\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))\n"
        "try:\n  DataStack(sys.argv[1]).append(np.zeros(10), 'third')\n"
        "except DataStackError as e:\n  print('ERR', e)\n"
    )
    before = stack.read_bytes()
    r = subprocess.run([sys.executable, "-c", code, str(stack)], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert r.stdout.startswith("ERR ") and str(stack) in r.stdout, (r.stdout, r.stderr)
    assert "nothing was written" in r.stdout
    assert stack.read_bytes() == before
    assert not list(stack.parent.glob(".a.datastack.journal*"))


# the child's own peak (ru_maxrss would carry the forking pytest process's peak over exec)
PEAK_MB = ("[int(x.split()[1]) // 1024 for x in open('/proc/self/status') "
           "if x.startswith('VmHWM')][0]")


def _rewrite(src: Path, dst: Path, replace: dict[str, bytes], extra=()) -> None:
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for n in zin.namelist():
            zout.writestr(n, replace.get(n, zin.read(n)))
        for name, data, method in extra:
            zout.writestr(zipfile.ZipInfo(name), data, compress_type=method)


def test_crafted_huge_shape_does_not_hang_check_or_recover(stack, tmp_path):
    import json
    import zipfile

    with zipfile.ZipFile(stack) as z:
        meta = json.loads(z.read("second/zarr.json"))
    meta["shape"] = [10**9, 10**9]
    meta["chunk_grid"]["configuration"]["chunk_shape"] = [1, 1]
    crafted = tmp_path / "crafted.datastack"
    _rewrite(stack, crafted, {"second/zarr.json": json.dumps(meta).encode()})
    t = time.monotonic()
    r = run_maxrf("check", crafted, timeout=60)
    assert r.returncode == 1 and "chunk(s) missing" in r.stdout
    r = run_maxrf("recover", crafted, "-o", tmp_path / "out.datastack", timeout=60)
    assert r.returncode == 0 and "kept 1 layer(s) first" in r.stdout, r.stdout + r.stderr
    assert time.monotonic() - t < 30


def test_zip_bomb_is_not_inflated_into_memory(stack, tmp_path):
    """A deflated member of 1.5 GiB: recover drops it (past the 1 GiB limit) and stays small."""
    import zipfile

    bomb = tmp_path / "bomb.datastack"
    _rewrite(stack, bomb, {}, [("bomb/c/0", b"\0" * (3 << 29), zipfile.ZIP_DEFLATED)])
    code = (
        "import sys;from maxrf.datastack import recover;"
        "out,kept,dropped=recover(sys.argv[1],sys.argv[2]);"
        "print(kept,dropped," + PEAK_MB + ")"
    )
    r = subprocess.run([sys.executable, "-c", code, str(bomb), str(tmp_path / "o.datastack")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    kept, rss_mb = r.stdout.rsplit(" ", 1)[0], int(r.stdout.split()[-1])
    assert "['first', 'second']" in kept and rss_mb < 600, (r.stdout, r.stderr)
    assert DataStack(tmp_path / "o.datastack").layers == ["first", "second"]


def test_recover_streams_large_entries(tmp_path):
    """Recovering a datastack holds one 16 MiB piece at a time, not the file."""
    big = tmp_path / "big.datastack"
    DataStack(big).append(np.random.default_rng(0).random((2048, 2048, 24)).astype("f4"), "cube",
                          chunks=(2048, 2048, 24))  # one 400 MB chunk
    code = (
        "import sys;from maxrf.datastack import recover;"
        "recover(sys.argv[1],sys.argv[2]);"
        "print(" + PEAK_MB + ")"
    )
    r = subprocess.run([sys.executable, "-c", code, str(big), str(tmp_path / "o.datastack")],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.split()[-1]) < 350, r.stdout  # the chunk alone is 400 MB
    np.testing.assert_array_equal(DataStack(tmp_path / "o.datastack").read("cube")[:2, :2],
                                  DataStack(big).read("cube")[:2, :2])


@pytest.mark.parametrize("command", ["recover", "repack", "convert"])
@pytest.mark.parametrize("target", ["fifo", "dir", "devnull"])
def test_no_command_writes_into_a_non_regular_output(stack, scan, tmp_path, command, target):
    out = {"fifo": lambda: _fifo(tmp_path / "out.datastack"),
           "dir": lambda: (tmp_path / "out.datastack").mkdir() or tmp_path / "out.datastack",
           "devnull": lambda: Path("/dev/null")}[target]()
    source = scan if command == "convert" else stack
    t = time.monotonic()
    r = run_maxrf(command, source, "-o", out, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, (r.stdout, r.stderr)
    assert time.monotonic() - t < 60
    if target == "devnull":
        assert Path("/dev/null").is_char_device()


def test_raw_that_is_a_fifo_is_refused(tmp_path, scan):
    fifo_raw = _fifo(tmp_path / "q.raw")
    shutil.copy(scan.with_suffix(".rpl"), tmp_path / "q.rpl")
    r = run_maxrf("convert", fifo_raw, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr


@pytest.mark.parametrize(
    ("dtype", "poison", "expect"),
    [("<f4", np.nan, "NaN or infinite"), ("<f4", -3.0, "negative"), ("<i2", -3, "negative")],
)
def test_values_counts_cannot_have_are_reported(tmp_path, dtype, poison, expect):
    from helpers import write_scan

    from maxrf.errors import DataWarning
    from maxrf.pipeline.convert import convert
    from tasks.report import _warnings

    data = np.random.default_rng(1).poisson(3.0, (6, 5, 64)).astype(np.float64)
    data[2, 3, 10:14] = poison
    raw = write_scan(tmp_path / "odd", data, dtype=dtype)
    with pytest.warns(DataWarning, match=expect) as seen:
        convert(raw, progress=False)
    assert len(seen) == 1 and "4 of 1920 values" in str(seen[0].message)
    ds = DataStack(raw.with_suffix(".datastack"))
    assert any(expect in w for w in _warnings(ds))
    assert np.isfinite(ds.read("maxrf_cube")).all()


def test_clean_counts_give_no_warning(tmp_path, recwarn):
    from helpers import write_scan

    from maxrf.pipeline.convert import convert

    data = np.random.default_rng(1).poisson(3.0, (6, 5, 64))
    convert(write_scan(tmp_path / "ok", data, dtype="<i2"), progress=False)
    assert not [w for w in recwarn if "values" in str(w.message)]
