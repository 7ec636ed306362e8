"""Round trips of .raw files over every dtype, byte order, record-by, offset and header layout."""

from __future__ import annotations

import itertools

import dask.array as da
import numpy as np
import pytest
from helpers import write_scan

from maxrf import open_raw
from maxrf.errors import RawSizeError, ScanNotFoundError
from maxrf.io.rpl import EnergyCalibration

DTYPES = ["u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f4", "f8"]
CASES = list(itertools.product(DTYPES, "<>", ["vector", "image"], [0, 17], ["A", "B", "lispix"]))


@pytest.mark.parametrize("kind, order, record_by, offset, layout", CASES)
def test_round_trip(tmp_path, kind, order, record_by, offset, layout):
    rng = np.random.default_rng(len(kind) + offset)
    data = (rng.random((5, 7, 11)) * 100 - (50 if kind[0] != "u" else 0)).astype(kind)
    raw = write_scan(
        tmp_path / "s", data, order + kind, record_by, offset, layout, EnergyCalibration(-0.5, 0.02)
    )
    arr = open_raw(raw)
    assert isinstance(arr, da.Array) and arr.shape == (5, 7, 11)
    assert arr.dtype == np.dtype(order + kind)
    np.testing.assert_array_equal(arr.compute(), data)
    np.testing.assert_array_equal(arr[1:4, 2:6, 3:9].compute(), data[1:4, 2:6, 3:9])


def test_dont_care_is_a_2d_image(tmp_path):
    data = np.arange(12, dtype="u1").reshape(3, 4, 1)
    raw = write_scan(tmp_path / "img", data, "|u1", "dont-care")
    np.testing.assert_array_equal(open_raw(raw).compute(), data)


def test_image_order_is_lazy_and_chunked(tmp_path):
    data = np.random.default_rng(0).integers(0, 9, (8, 6, 20)).astype("<u2")
    raw = write_scan(tmp_path / "s", data, "<u2", "image")
    arr = open_raw(raw, chunks=(3, 6, 20))
    assert arr.numblocks == (3, 1, 1)
    np.testing.assert_array_equal(arr.blocks[1].compute(), data[3:6])


def test_uppercase_header_and_explicit_path(tmp_path):
    data = np.ones((2, 3, 4), "<u2")
    raw = write_scan(tmp_path / "s", data)
    (tmp_path / "s.rpl").rename(tmp_path / "s.RPL")
    assert open_raw(raw).shape == (2, 3, 4)
    (tmp_path / "s.RPL").rename(tmp_path / "other.txt")
    assert open_raw(raw, tmp_path / "other.txt").shape == (2, 3, 4)


def test_size_mismatch_names_both_sizes(tmp_path):
    raw = write_scan(tmp_path / "s", np.ones((4, 4, 8), "<u2"))
    full = raw.read_bytes()
    raw.write_bytes(full[:-10])
    with pytest.raises(RawSizeError) as err:
        open_raw(raw)
    msg = str(err.value)
    assert f"{len(full) - 10} bytes" in msg and f"expects {len(full)}" in msg
    assert "incomplete" in msg
    raw.write_bytes(full + b"xx")
    with pytest.raises(RawSizeError, match="longer than the header"):
        open_raw(raw)


def test_missing_files(tmp_path):
    with pytest.raises(ScanNotFoundError, match="raw file not found"):
        open_raw(tmp_path / "none.raw")
    (tmp_path / "lonely.raw").write_bytes(b"12")
    with pytest.raises(ScanNotFoundError, match="no .rpl header"):
        open_raw(tmp_path / "lonely.raw")
