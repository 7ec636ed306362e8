"""The compiled blosc-LZ4 encoder writes exactly the bytes c-blosc (numcodecs) writes."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from numcodecs import Blosc

from maxrf.datastack import blosc_lz4
from maxrf.datastack.blosc import BloscEncoder, _compiled
from maxrf.scratch import thread_buffer

pytestmark = pytest.mark.skipif(not blosc_lz4.available(), reason="LZ4 symbol not exported")


def _scratch(name: str, nbytes: int) -> np.ndarray:
    return thread_buffer(name, (nbytes,), np.uint8)


def _encode(arr: np.ndarray, clevel: int, shuffle: int) -> bytes:
    dest = np.empty(arr.nbytes + blosc_lz4.OVERHEAD, np.uint8)
    return bytes(dest[: blosc_lz4.encode_into(arr, clevel, shuffle, dest, _scratch)])


def _contents(shape: tuple[int, ...], dtype: str, rng: np.random.Generator) -> dict:
    noise = rng.integers(0, 256, int(np.prod(shape)) * np.dtype(dtype).itemsize, dtype=np.uint8)
    return {
        "counts": rng.poisson(0.7, shape).astype(dtype),
        "smooth": (rng.random(shape) * 1e3).astype(dtype),
        "zeros": np.zeros(shape, dtype),
        "noise": noise.view(dtype).reshape(shape),  # incompressible: stored streams / chunk
    }


@pytest.mark.parametrize("dtype", ["<u2", "<f4", "<u1", "<u4", "<f8", "<i2", "V3"])
@pytest.mark.parametrize(
    "shape",
    [
        (16, 16, 4096),  # the cube's chunk
        (16, 16, 300),  # one leftover block
        (3, 5, 2049),  # odd sizes: leftover bytes, elements not a multiple of 8
        (32768,),
        (100003,),
    ],
)
def test_bytes_equal_numcodecs(dtype, shape):
    rng = np.random.default_rng(zlib.crc32(repr((dtype, shape)).encode()))
    if dtype == "V3":
        arr = rng.integers(0, 3, (int(np.prod(shape)), 3), dtype=np.uint8).view("V3").reshape(shape)
        contents = {"void": np.ascontiguousarray(arr)}
    else:
        contents = _contents(shape, dtype, rng)
    for kind, arr in contents.items():
        if arr.nbytes < blosc_lz4.L1:
            continue
        for shuffle in (Blosc.NOSHUFFLE, Blosc.SHUFFLE, Blosc.BITSHUFFLE):
            for clevel in (1, 5, 9):
                ours = _encode(arr, clevel, shuffle)
                ref = Blosc("lz4", clevel, shuffle).encode(arr)
                assert ours == ref, (kind, shuffle, clevel)


def test_decodes_to_the_input():
    arr = np.random.default_rng(3).random((16, 16, 777)).astype("<f4")
    for shuffle in (Blosc.NOSHUFFLE, Blosc.SHUFFLE, Blosc.BITSHUFFLE):
        out = Blosc("lz4", 5, shuffle).decode(_encode(arr, 5, shuffle))
        np.testing.assert_array_equal(np.frombuffer(out, "<f4").reshape(arr.shape), arr)


def test_blosc_encoder_uses_it_and_falls_back(monkeypatch):
    arr = np.random.default_rng(4).poisson(1, (16, 16, 512)).astype("<u2")
    codec = Blosc("lz4", 5, Blosc.BITSHUFFLE)
    assert _compiled(codec, arr.nbytes)
    assert not _compiled(Blosc("zstd", 5, Blosc.BITSHUFFLE), arr.nbytes)
    assert not _compiled(codec, blosc_lz4.L1 - 1)  # small chunks: c-blosc
    compiled = bytes(BloscEncoder(codec).encode_view(arr, "t"))
    monkeypatch.setattr(blosc_lz4, "available", lambda: False)
    assert not _compiled(codec, arr.nbytes)
    assert bytes(BloscEncoder(codec).encode_view(arr, "t")) == compiled == codec.encode(arr)


def test_bad_parameters():
    arr = np.zeros(blosc_lz4.L1, np.uint8)
    dest = np.empty(arr.size + 16, np.uint8)
    with pytest.raises(ValueError, match="clevel"):
        blosc_lz4.encode_into(arr, 0, 1, dest, _scratch)
    with pytest.raises(ValueError, match="range"):
        blosc_lz4.encode_into(arr[:100], 5, 1, dest, _scratch)
