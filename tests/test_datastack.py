"""The datastack on real zip files: API, versions, provenance, crash safety, locking, bad input."""

from __future__ import annotations

import logging
import os
import resource
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import zarr
from helpers import run_maxrf

from maxrf.datastack import PAD, DataStack, check, recover, repack
from maxrf.errors import DataStackError, LayerNotFoundError, LockTimeoutError

WORKER = Path(__file__).with_name("datastack_worker.py")


def worker(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


@pytest.fixture
def stack(tmp_path) -> tuple[DataStack, dict[str, np.ndarray]]:
    ds = DataStack(tmp_path / "s.datastack")
    layers = {
        "maxrf_cube": np.random.default_rng(0).random((40, 33, 300)).astype("f4"),
        "maxrf_maxspectrum": np.linspace(0, 1, 300, dtype="f4"),
        "counts": np.arange(24, dtype="u2").reshape(2, 3, 4),
    }
    for name, arr in layers.items():
        ds.append(arr, name)
    return ds, layers


def test_api_round_trip_and_versions(stack):
    ds, layers = stack
    assert ds.layers == list(layers)
    for name, arr in layers.items():
        np.testing.assert_array_equal(ds.read(name), arr)
        assert ds.read(name).dtype == arr.dtype
    lazy = ds.read("maxrf_cube", compute=False)
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), layers["maxrf_cube"])
    assert ds.append(layers["maxrf_cube"] * 2, "maxrf_cube") == "maxrf_cube_"
    assert ds.append(layers["maxrf_cube"] * 3, "maxrf_cube") == "maxrf_cube__"
    assert ds.latest("maxrf_cube") == "maxrf_cube__"
    np.testing.assert_array_equal(ds.read("maxrf_cube"), layers["maxrf_cube"] * 3)
    np.testing.assert_array_equal(ds.read("maxrf_cube_", latest=False), layers["maxrf_cube"] * 2)
    with pytest.raises(LayerNotFoundError, match="no layer 'nope'"):
        ds.read("nope")
    assert "maxrf_cube" in ds.tree() and "300" in ds.tree(show_arrays=True)


def test_provenance_and_completeness_mark(tmp_path):
    ds = DataStack(tmp_path / "p.datastack")
    with ds.appending() as app:
        app.write("a", np.ones(5))
        app.finish(
            "a",
            {
                "maxrf": {"step": "demo", "params": {"x": 1}, "cache_key": "k1", "inputs": ["k0"]},
                "note": "hi",
            },
        )
    attrs = ds.attrs("a")
    meta = attrs["maxrf"]
    assert meta["complete"] is True and meta["step"] == "demo" and meta["cache_key"] == "k1"
    assert meta["inputs"] == ["k0"] and meta["params"] == {"x": 1} and attrs["note"] == "hi"
    assert meta["created"].endswith("+00:00") and meta["duration_s"] >= 0 and meta["version"]


def test_dask_append_misaligned_chunks_bounded(tmp_path):
    ds = DataStack(tmp_path / "d.datastack")
    data = np.random.default_rng(1).random((70, 45, 200)).astype("f4")
    ds.append(da.from_array(data, chunks=(13, 17, 50)), "cube")
    np.testing.assert_array_equal(ds.read("cube"), data)
    ds.append(da.from_array(data[..., 0], chunks=(7, 9)), "img")
    np.testing.assert_array_equal(ds.read("img"), data[..., 0])


def test_plain_zarr_reads_it(stack):
    ds, layers = stack
    group = zarr.open_group(zarr.storage.ZipStore(ds.path, mode="r"), mode="r")
    assert sorted(group.array_keys()) == sorted(layers)
    np.testing.assert_array_equal(group["maxrf_cube"][...], layers["maxrf_cube"])
    codecs = {type(c).__name__ for c in group["maxrf_cube"].compressors}
    assert codecs <= {"BloscCodec", "ZstdCodec", "GzipCodec"}


def test_ragged_lists(tmp_path):
    ds = DataStack(tmp_path / "r.datastack")
    rows = [[1, 2, 3], [], [7], [-5, 0]]
    ds.append_list(rows, "hotmax_peak_idxs_list")
    got = ds.read_list("hotmax_peak_idxs_list")
    assert [list(r) for r in got] == rows
    assert ds.read("hotmax_peak_idxs_list").tolist()[1] == [PAD] * 3
    ds.append_list([[], []], "empty_rows")
    assert [list(r) for r in ds.read_list("empty_rows")] == [[], []]
    ds.append_list([], "no_rows")
    assert ds.read_list("no_rows") == []
    with pytest.raises(DataStackError, match="-9999"):
        ds.append_list([[1, PAD]], "bad")
    with pytest.raises(DataStackError, match="non-integers"):
        ds.append_list([[1.5]], "bad")
    assert "bad" not in ds.layers


@pytest.mark.parametrize("name", ["a/b", "..", "../x", "x..y", "", ".hidden", "trail_", "a b"])
def test_bad_layer_names(tmp_path, name):
    ds = DataStack(tmp_path / "n.datastack")
    with pytest.raises(DataStackError, match="invalid layer name"):
        ds.append(np.ones(3), name)


def test_repack_keeps_latest_under_plain_name(stack):
    ds, layers = stack
    ds.append(layers["maxrf_cube"] + 1, "maxrf_cube")
    before = ds.path.stat().st_size
    repack(ds)
    assert ds.layers == list(layers)
    np.testing.assert_array_equal(ds.read("maxrf_cube"), layers["maxrf_cube"] + 1)
    assert ds.path.stat().st_size < before and check(ds.path).ok
    repack(ds, select=["counts"])
    assert ds.layers == ["counts"]


def test_check_and_recover_a_truncated_copy(stack, tmp_path):
    ds, layers = stack
    assert check(ds.path).ok
    data = ds.path.read_bytes()
    damaged = tmp_path / "damaged.datastack"
    cut = data.find(b"counts/zarr.json") + 5
    damaged.write_bytes(data[:cut])  # the last layer's metadata and the directory are lost
    with pytest.raises(DataStackError, match="recover"):
        _ = DataStack(damaged).layers
    out, kept, dropped = recover(damaged, tmp_path / "fixed.datastack")
    assert kept == ["maxrf_cube", "maxrf_maxspectrum"] and dropped == ["counts"]
    fixed = DataStack(out)
    for name in kept:
        np.testing.assert_array_equal(fixed.read(name), layers[name])
    assert check(out).ok
    res = run_maxrf("recover", damaged, "-o", tmp_path / "cli.datastack")
    assert res.returncode == 0 and "kept 2 layer(s)" in res.stdout
    assert run_maxrf("check", tmp_path / "cli.datastack").returncode == 0


def test_check_reports_missing_chunks(stack, tmp_path):
    ds, _ = stack
    src = entries(ds.path)
    bad = tmp_path / "bad.datastack"
    with zipfile.ZipFile(bad, "w") as zf:
        for name, data in src.items():
            if name != "maxrf_cube/c/1/0/0":
                zf.writestr(name, data)
    report = check(bad)
    assert not report.ok and "maxrf_cube: 1 chunk(s) missing" in report.problems[0]
    out = run_maxrf("check", bad)
    assert out.returncode == 1 and "missing" in out.stdout


def test_not_a_zip_and_not_a_datastack(tmp_path):
    text = tmp_path / "t.datastack"
    text.write_text("hello")
    with pytest.raises(DataStackError, match="not a valid datastack zip"):
        _ = DataStack(text).layers
    with pytest.raises(DataStackError):
        DataStack(text).append(np.ones(3), "x")
    assert text.read_text() == "hello"
    other = tmp_path / "o.datastack"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("readme.txt", "not zarr")
    before = other.read_bytes()
    with pytest.raises(DataStackError, match="not a datastack"):
        DataStack(other).append(np.ones(3), "x")
    assert other.read_bytes() == before
    out = run_maxrf("tree", text)
    assert out.returncode == 2 and out.stderr.count("\n") == 1


def unprivileged(cmd: list[str]) -> list[str]:
    """Run ``cmd`` without root's power to ignore file permissions (as users have)."""
    if os.geteuid() != 0:
        return cmd
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--", *cmd]


def test_read_only_folder(tmp_path, stack):
    ds, layers = stack
    folder = tmp_path / "ro"
    folder.mkdir()
    target = folder / "new.datastack"
    existing = folder / "s.datastack"
    existing.write_bytes(ds.path.read_bytes())
    os.chmod(folder, 0o555)
    try:
        for path in (target, existing):
            code = (
                "from maxrf.datastack import DataStack; import numpy as np;"
                f"DataStack(r'{path}').append(np.ones(3), 'x')"
            )
            res = subprocess.run(
                unprivileged([sys.executable, "-c", code]), capture_output=True, text=True
            )
            assert res.returncode != 0 and "DataStackError" in res.stderr
            assert "Permission denied" in res.stderr.splitlines()[-1]
        assert not target.exists()
        assert existing.read_bytes() == ds.path.read_bytes()
        code = f"from maxrf.datastack import DataStack; print(DataStack(r'{existing}').layers)"
        res = subprocess.run(
            unprivileged([sys.executable, "-c", code]), capture_output=True, text=True
        )
        assert res.returncode == 0 and "maxrf_cube" in res.stdout  # reading still works
    finally:
        os.chmod(folder, 0o755)


def test_disk_full_leaves_file_unchanged(stack):
    ds, layers = stack
    before = ds.path.read_bytes()
    limit = len(before) + 200_000
    code = (
        "import numpy as np; from maxrf.datastack import DataStack;"
        f"DataStack(r'{ds.path}').append(np.random.default_rng(0).random((64, 64, 512)), 'big')"
    )

    def cap():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, preexec_fn=cap
    )
    assert res.returncode != 0 and "the file is unchanged" in res.stderr
    assert ds.path.read_bytes() == before
    assert not ds.journal_path.exists()
    assert DataStack(ds.path).layers == list(layers)


def _kill_when(proc: subprocess.Popen, appears, delay: float, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while not appears() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(delay)
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return alive


@pytest.mark.parametrize("grown_mb", [0, 1, 20, 120])
def test_sigkill_during_append_loses_nothing(stack, grown_mb, caplog):
    """Kill the writer once the journal exists and the zip has grown by ``grown_mb`` MB."""
    ds, layers = stack
    before = entries(ds.path)
    size0 = ds.path.stat().st_size
    proc = worker("append", ds.path, 7)

    def grown() -> bool:
        return ds.journal_path.exists() and ds.path.stat().st_size >= size0 + grown_mb * 2**20

    killed = _kill_when(proc, grown, 0.0)
    assert ds.path.stat().st_size >= size0 + grown_mb * 2**20 or not killed
    if not killed:  # finished before the kill: the new layer must then be complete
        assert DataStack(ds.path).layers == [*layers, "layer7"]
        return
    with caplog.at_level(logging.WARNING, logger="maxrf"):
        fresh = DataStack(ds.path)
        assert fresh.layers == list(layers)
    assert "rolled back an interrupted append" in caplog.text
    assert entries(ds.path) == before  # byte for byte
    for name, arr in layers.items():
        np.testing.assert_array_equal(fresh.read(name), arr)
    assert check(ds.path).ok
    fresh.append(np.ones(4), "after")  # and the file takes new layers again
    assert fresh.layers == [*layers, "after"]


@pytest.mark.parametrize("delay", [0.0, 0.2])
def test_sigkill_during_repack_loses_nothing(stack, delay):
    ds, layers = stack
    ds.append(np.zeros((256, 256, 512), "f4") + 1, "maxrf_cube")
    before = entries(ds.path)
    proc = worker("repack", ds.path)
    repacking = lambda: any(ds.path.parent.glob(".s.datastack.repack-*"))  # noqa: E731
    killed = _kill_when(proc, repacking, delay)
    fresh = DataStack(ds.path)
    if killed and entries(ds.path) != before:
        # alive when killed, yet past its final rename: then the repack must be whole
        assert check(ds.path).ok and not any(n.endswith("_") for n in fresh.layers)
        np.testing.assert_array_equal(fresh.read("maxrf_cube"), 1)
    assert fresh.read("maxrf_maxspectrum").shape == (300,)
    fresh.append(np.ones(2), "after")
    assert not list(ds.path.parent.glob(".s.datastack.repack-*"))
    assert check(ds.path).ok


def test_two_writers_both_land(stack):
    ds, layers = stack
    procs = [worker("append", ds.path, seed) for seed in (1, 2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    fresh = DataStack(ds.path)
    assert sorted(fresh.layers) == sorted([*layers, "layer1", "layer2"])
    assert check(ds.path).ok


def test_second_writer_times_out_clearly(stack):
    ds, layers = stack
    holder = worker("hold", ds.path, 8)
    assert holder.stdout.readline().strip() == "locked"
    before = ds.path.read_bytes()
    t0 = time.monotonic()
    with pytest.raises(LockTimeoutError, match="another process holds the writer lock"):
        DataStack(ds.path, lock_timeout=0.5).append(np.ones(3), "x")
    assert time.monotonic() - t0 < 5 and ds.path.read_bytes() == before
    holder.kill()
    holder.wait()
    DataStack(ds.path, lock_timeout=5).append(np.ones(3), "x")  # the kernel freed the lock


def test_reader_during_append_sees_committed_state(stack):
    ds, layers = stack
    proc = worker("append", ds.path, 3)
    deadline = time.monotonic() + 60
    while not ds.journal_path.exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    seen = set()
    while proc.poll() is None:
        reader = DataStack(ds.path)
        names = reader.layers
        seen.add(tuple(names))
        np.testing.assert_array_equal(reader.read("counts"), layers["counts"])
    assert proc.returncode == 0, proc.stderr.read()
    assert tuple(layers) in seen
    assert DataStack(ds.path).layers == [*layers, "layer3"]


def test_blosc_encoder_writes_numcodecs_bytes():
    from numcodecs import Blosc

    from maxrf.datastack.blosc import BloscEncoder

    rng = np.random.default_rng(0)
    arrays = [rng.poisson(1, (16, 16, 300)).astype("<u2"), rng.random((5, 7, 33)).astype("<f4")]
    for arr in arrays:
        for shuffle in (Blosc.NOSHUFFLE, Blosc.SHUFFLE, Blosc.BITSHUFFLE):
            codec = Blosc("lz4", 5, shuffle)
            enc = BloscEncoder(codec)
            assert bytes(enc.encode_view(arr, "t")) == codec.encode(arr)
            np.testing.assert_array_equal(
                np.frombuffer(codec.decode(enc.encode(arr)), arr.dtype).reshape(arr.shape), arr
            )


@pytest.mark.parametrize("direct", [True, False])
def test_direct_and_buffered_appends_write_the_same_file(tmp_path, monkeypatch, direct):
    from maxrf.datastack import zipwrite

    data = np.random.default_rng(1).random((70, 50, 300)).astype("f4")
    monkeypatch.setattr(zipwrite, "SEGMENT", 2**20)  # many segments, entries straddling them
    ds = DataStack(tmp_path / f"{direct}.datastack")
    ds.append(np.arange(3), "first")
    monkeypatch.setenv("MAXRF_DIRECT_IO", "1" if direct else "0")
    ds.append(data, "cube", chunks=(16, 16, 300))
    ds.append(np.arange(4), "third")
    fresh = DataStack(ds.path)
    np.testing.assert_array_equal(fresh.read("cube"), data)
    np.testing.assert_array_equal(fresh.read("first"), np.arange(3))
    assert check(ds.path).ok
    with zipfile.ZipFile(ds.path) as zf:
        assert zf.testzip() is None


@pytest.mark.parametrize("refused_at", ["open", "write"])
def test_direct_io_refused_falls_back_to_buffered(tmp_path, monkeypatch, refused_at):
    """Filesystems may refuse O_DIRECT when opening or only when writing (EINVAL): injected here,
    as this machine's filesystems (ext4, even tmpfs) all accept it."""
    import errno

    from maxrf.datastack import zipwrite

    real_open, real_pwrite, direct_fds, direct_opens = os.open, os.pwrite, set(), []

    def fake_open(path, flags, *args):
        if flags & os.O_DIRECT:
            if refused_at == "open":
                raise OSError(errno.EINVAL, "O_DIRECT refused")
            fd = real_open(path, flags, *args)
            direct_fds.add(fd)
            direct_opens.append(fd)
            return fd
        return real_open(path, flags, *args)

    def fake_pwrite(fd, data, offset):
        if fd in direct_fds:
            raise OSError(errno.EINVAL, "O_DIRECT write refused")
        return real_pwrite(fd, data, offset)

    def fake_close(fd):  # a closed fd's number may be reused by a buffered open
        direct_fds.discard(fd)
        return real_close(fd)

    real_close = os.close
    monkeypatch.setattr(zipwrite.os, "open", fake_open)
    monkeypatch.setattr(zipwrite.os, "pwrite", fake_pwrite)
    monkeypatch.setattr(zipwrite.os, "close", fake_close)
    ds = DataStack(tmp_path / "f.datastack")
    ds.append(np.arange(10), "a")
    data = np.random.default_rng(2).random((40, 40, 64)).astype("f4")
    ds.append(data, "b", chunks=(16, 16, 64))
    np.testing.assert_array_equal(DataStack(ds.path).read("b"), data)
    np.testing.assert_array_equal(DataStack(ds.path).read("a"), np.arange(10))
    assert check(ds.path).ok
    assert bool(direct_opens) == (refused_at == "write")


def test_new_files_get_the_usual_permissions(tmp_path):
    """Datastacks (and plots, exports) are written under a temporary name: they must still end
    up readable as a plain open() would make them, and a replaced file keeps its mode."""
    import stat

    from maxrf.io.atomic import atomic_write

    ds = DataStack(tmp_path / "p.datastack")
    ds.append(np.zeros(3), "a")
    old = os.umask(0o022)
    os.umask(old)
    assert stat.S_IMODE(os.stat(ds.path).st_mode) == 0o666 & ~old
    png = tmp_path / "x.png"
    atomic_write(png, lambda t: open(t, "wb").write(b"1"))
    os.chmod(png, 0o640)
    atomic_write(png, lambda t: open(t, "wb").write(b"2"))
    assert stat.S_IMODE(os.stat(png).st_mode) == 0o640 and png.read_bytes() == b"2"


def test_the_zip_directory_is_read_once_per_file_version(stack, monkeypatch):
    """Readers of one committed version share its parsed directory (a real-size datastack has
    ~70 000 entries: 1.3 s each time); an append makes a new version, read afresh."""
    from maxrf.datastack import zipindex

    ds, layers = stack
    zipindex.forget()
    parses = []
    real = zipfile.ZipFile._RealGetContents
    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents",
                        lambda self: (parses.append(1), real(self))[1])
    readers = [DataStack(ds.path) for _ in range(3)]
    for r in readers:
        np.testing.assert_array_equal(r.read("counts"), layers["counts"])
    assert len(parses) == 1
    ds.append(np.ones(5, dtype="u1"), "extra")  # (the append reads the directory itself)
    fresh = DataStack(ds.path)
    assert "extra" in fresh
    np.testing.assert_array_equal(fresh.read("extra"), np.ones(5, dtype="u1"))
    seen = len(parses)
    assert "extra" in DataStack(ds.path) and len(parses) == seen
    assert "extra" in readers[0]  # an open reader sees the new version too
