"""The compiled blosc-LZ4 encoder writes exactly the bytes c-blosc (numcodecs) writes."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from numcodecs import Blosc

from maxrf.datastack import blosc_lz4
from maxrf.datastack.blosc import BloscEncoder, _compiled
from maxrf.scratch import thread_buffer

needs_lz4 = pytest.mark.skipif(not blosc_lz4.available(), reason="LZ4 symbol not exported")


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


@needs_lz4
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


@needs_lz4
def test_decodes_to_the_input():
    arr = np.random.default_rng(3).random((16, 16, 777)).astype("<f4")
    for shuffle in (Blosc.NOSHUFFLE, Blosc.SHUFFLE, Blosc.BITSHUFFLE):
        out = Blosc("lz4", 5, shuffle).decode(_encode(arr, 5, shuffle))
        np.testing.assert_array_equal(np.frombuffer(out, "<f4").reshape(arr.shape), arr)


@needs_lz4
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


@needs_lz4
def test_bad_parameters():
    arr = np.zeros(blosc_lz4.L1, np.uint8)
    dest = np.empty(arr.size + 16, np.uint8)
    with pytest.raises(ValueError, match="clevel"):
        blosc_lz4.encode_into(arr, 0, 1, dest, _scratch)
    with pytest.raises(ValueError, match="range"):
        blosc_lz4.encode_into(arr[:100], 5, 1, dest, _scratch)


def _pinned(package: str) -> str | None:
    from helpers import ROOT

    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.lower().startswith(f"{package}=="):
            return line.split("==")[1].strip()
    return None


def test_fast_path_is_on_with_the_pinned_numcodecs():
    """Fails loudly (not a silent 9 % slow-down) when the pinned numcodecs stops exporting the
    symbols the fast path binds."""
    import numcodecs

    from maxrf.datastack.blosc import fast_path

    if numcodecs.__version__ != _pinned("numcodecs"):
        pytest.skip(f"numcodecs {numcodecs.__version__} is not the pinned one")
    assert fast_path() is None


@pytest.mark.parametrize("name", ["raw-u2-bitshuffle", "cube-f4-shuffle",
                                  "raw-u2-zstd-bitshuffle", "small-u2-noshuffle"])
def test_golden_chunks(name):
    """The bytes written today equal the stored ones (from numcodecs' own encoder), and they
    decode to the input: a numcodecs/c-blosc change that alters the format shows up here."""
    from golden_chunks import CASES, FOLDER, chunk_input

    codec, _ = CASES[name]
    data = chunk_input(name)
    golden = (FOLDER / f"{name}.blosc").read_bytes()
    assert BloscEncoder(codec).encode(data) == golden
    assert codec.encode(data) == golden
    np.testing.assert_array_equal(np.frombuffer(codec.decode(golden), data.dtype), data.ravel())


def test_fast_path_off_is_said_once(monkeypatch, caplog):
    import maxrf.datastack.blosc as b

    monkeypatch.setattr(b, "_compress_ctx", lambda: None)
    arr = np.ones((16, 16, 64), "<u2")
    codec = Blosc("lz4", 5, Blosc.BITSHUFFLE)
    b.fast_path.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="maxrf"):
            for _ in range(3):
                assert BloscEncoder(codec).encode(arr) == codec.encode(arr)
    finally:
        b.fast_path.cache_clear()  # the real answer again for later tests
    said = [r for r in caplog.records if "blosc fast path off" in r.getMessage()]
    assert len(said) == 1 and "blosc_compress_ctx" in said[0].getMessage()
