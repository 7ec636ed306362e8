"""Blocks of a spectra layer read straight from the zip (maxrf.datastack.blockread) are exactly
what zarr reads: aligned and unaligned blocks, chunks past the array's edge, the chunk-major
``spectra`` order, a layer whose codecs take zarr's path, and a damaged chunk (refused as zarr
refuses it, never read as data)."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from zarr.codecs import ZstdCodec

from maxrf.datastack import DataStack
from maxrf.datastack.blockread import BlockReader
from maxrf.errors import MaxrfError


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    path = tmp_path_factory.mktemp("br") / "b.datastack"
    rng = np.random.default_rng(0)
    cube = rng.poisson(0.7, (37, 45, 48)).astype(np.uint16)  # 37 x 45: edge chunks of 5 and 13
    ds = DataStack(path)
    ds.append(cube, "maxrf_raw", chunks=(16, 16, 48))
    ds.append(cube, "zstd_raw", chunks=(16, 16, 48), compressor=ZstdCodec(level=3))
    return path, cube


@pytest.mark.parametrize("block", [(0, 16, 0, 32), (16, 32, 16, 45), (32, 37, 0, 45),
                                   (5, 29, 3, 41), (36, 37, 44, 45), (0, 37, 0, 45)])
def test_blocks_equal_zarr_s(stack, block):
    path, cube = stack
    r = BlockReader(DataStack(path), "maxrf_raw")
    assert r.fast
    r0, r1, c0, c1 = block
    want = cube[r0:r1, c0:c1]
    assert np.array_equal(r.read(*block), want)
    spectra, order = r.spectra(*block)
    assert np.array_equal(spectra[order].reshape(want.shape), want)
    # a reused buffer gives the same answer
    again, order2 = r.spectra(*block, out=np.full(spectra.size + 7, 9, np.uint16))
    assert np.array_equal(again[order2].reshape(want.shape), want)


def test_other_codecs_go_through_zarr(stack):
    path, cube = stack
    r = BlockReader(DataStack(path), "zstd_raw")
    assert not r.fast
    assert np.array_equal(r.read(3, 30, 7, 40), cube[3:30, 7:40])
    spectra, order = r.spectra(16, 32, 16, 45)
    assert np.array_equal(spectra[order].reshape(16, 29, 48), cube[16:32, 16:45])


def test_a_damaged_chunk_is_refused_not_read(stack, tmp_path):
    path, _cube = stack
    bad = tmp_path / "bad.datastack"
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("maxrf_raw/c/1/1/0")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.file_size // 2] ^= 0xFF  # one flipped byte inside the chunk
    bad.write_bytes(bytes(data))
    r = BlockReader(DataStack(bad), "maxrf_raw")
    assert np.array_equal(r.read(0, 16, 0, 16), _cube[:16, :16])  # other chunks still read
    with pytest.raises((MaxrfError, zipfile.BadZipFile, OSError, ValueError, RuntimeError)):
        r.read(16, 32, 16, 32)


@pytest.mark.parametrize("rect", [(0, 37, 0, 45), (3, 30, 17, 44), (20, 21, 5, 6), (16, 32, 0, 16)])
def test_sums_equal_numpy_s(stack, rect):
    path, cube = stack
    for name in ("maxrf_raw", "zstd_raw"):
        r = BlockReader(DataStack(path), name)
        r0, r1, c0, c1 = rect
        want = cube[r0:r1, c0:c1].sum((0, 1), dtype=np.uint64)
        assert np.array_equal(r.sum(*rect), want) and np.array_equal(r.sum(*rect, threads=1), want)


def test_a_reader_during_an_append_reads_the_committed_state(stack, tmp_path):
    """While another writer appends (its journal present), a new reader sees the committed
    state through a view with no file descriptor: blocks then come through zarr."""
    path, cube = stack
    copy = tmp_path / "c.datastack"
    copy.write_bytes(path.read_bytes())
    writer = DataStack(copy)
    with writer.appending() as app:
        app.write("extra", np.zeros((4, 4), np.float32))
        assert writer.journal_path.exists()
        r = BlockReader(DataStack(copy), "maxrf_raw")
        assert not r.fast
        assert np.array_equal(r.read(3, 20, 5, 40), cube[3:20, 5:40])
        assert np.array_equal(r.sum(0, 37, 0, 45), cube.sum((0, 1), dtype=np.uint64))
