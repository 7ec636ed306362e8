"""The zip records maxrf writes itself (local headers, directory, ZIP64 end records) are read
back by Python's zipfile, also past 4 GiB and 65 535 entries."""

from __future__ import annotations

import zipfile

import numpy as np
from isal.isal_zlib import crc32

from maxrf.datastack import DataStack
from maxrf.datastack.zipdir import (
    MAX16,
    central_entry,
    dos_time,
    end_records,
    local_header,
    read_directory,
)


def _write_zip(path, entries, start: int = 0) -> None:
    """Entries stored from byte ``start`` on (a sparse hole before: no disk used)."""
    when = dos_time()
    central = []
    with open(path, "wb") as f:
        f.seek(start)
        for name, data in entries:
            at = f.tell()
            f.write(local_header(name.encode(), crc32(data), len(data), when) + data)
            central.append(central_entry(name.encode(), crc32(data), len(data), at, when))
        cd_at = f.tell()
        records = b"".join(central)
        f.write(records + end_records(cd_at, len(records), len(central)))


def test_offsets_past_4_gib_use_zip64(tmp_path):
    path = tmp_path / "big.zip"
    _write_zip(path, [("a/c/0", b"x" * 1000), ("zarr.json", b"{}")], start=5 * 2**30)
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        assert zf.read("a/c/0") == b"x" * 1000 and zf.getinfo("zarr.json").header_offset > 2**32
    with open(path, "rb") as f:  # and our own reader finds the directory again
        f.seek(5 * 2**30)
        tail = f.read()
    d = read_directory(tail, 5 * 2**30)
    assert d.entries == 2 and d.offset > 2**32


def test_more_than_65535_entries(tmp_path):
    path = tmp_path / "many.zip"
    _write_zip(path, [(f"e{i}", bytes([i % 256])) for i in range(MAX16 + 10)])
    with zipfile.ZipFile(path) as zf:
        assert len(zf.infolist()) == MAX16 + 10 and zf.read("e65540") == bytes(
            [65540 % 256])


def test_appends_keep_earlier_directory_entries_byte_for_byte(tmp_path):
    path = tmp_path / "s.datastack"
    ds = DataStack(path)
    ds.append(np.arange(10.0), "one")
    with zipfile.ZipFile(path) as zf:
        before = {i.filename: (i.header_offset, i.CRC, i.file_size) for i in zf.infolist()}
    ds.append(np.ones((3, 4), np.int32), "two")
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        after = {i.filename: (i.header_offset, i.CRC, i.file_size) for i in zf.infolist()}
    assert {k: after[k] for k in before} == before and len(after) > len(before)
    np.testing.assert_array_equal(DataStack(path).read("one"), np.arange(10.0))


def test_a_datastack_with_more_than_65535_chunks(tmp_path):
    path = tmp_path / "m.datastack"
    n = MAX16 + 100
    DataStack(path).append(np.zeros(2), "first")
    with DataStack(path).appending() as app:
        w = app.create("many", (n,), np.int32, chunks=(1,))
        ((_key, chunk),) = w.encoder.encode_region((0,), np.full(1, 7, np.int32))
        chunk = bytes(chunk)  # every chunk holds 7: encode once, write n entries
        for i in range(n):
            w.put([(w.encoder.key((i,)), chunk)])
    DataStack(path).append(np.ones(3), "after")  # an append after that keeps it whole
    with zipfile.ZipFile(path) as zf:
        assert len(zf.infolist()) > MAX16 and zf.testzip() is None
    ds = DataStack(path)
    assert sorted(ds.layers) == ["after", "first", "many"]
    many = ds.array("many")
    assert many.shape == (n,) and many[0] == 7 and many[n - 1] == 7
