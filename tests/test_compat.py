"""The dependency internals maxrf uses (``maxrf.compat``), checked against the pinned versions:
an upgrade that moves or changes them fails here."""

from __future__ import annotations

import io
import zipfile

import numcodecs
import numpy as np
import zarr
from helpers import ROOT

from maxrf.compat.numcodecs import blosc_function
from maxrf.compat.zarr import chunk_key_encoding
from maxrf.compat.zipfile import has_member


def _pinned(name: str) -> str:
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.lower().startswith(f"{name}=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"{name} is not pinned in requirements.lock")


def test_the_installed_versions_are_the_pinned_ones():
    """The internals below were checked with these versions; a new pin needs this file again."""
    assert zarr.__version__ == _pinned("zarr")
    assert numcodecs.__version__ == _pinned("numcodecs")


def test_zarr_chunk_keys_are_what_zarr_writes(tmp_path):
    a = zarr.create_array(str(tmp_path / "a"), shape=(4, 6), chunks=(2, 3), dtype="u1")
    a[:] = 1
    written = sorted(p.relative_to(tmp_path / "a").as_posix()
                     for p in (tmp_path / "a").rglob("*") if p.is_file() and p.name != "zarr.json")
    enc = chunk_key_encoding()
    assert sorted(enc.encode_chunk_key((i, j)) for i in range(2) for j in range(2)) == written
    assert chunk_key_encoding({"name": "v2", "configuration": {"separator": "."}}
                              ).encode_chunk_key((1, 2)) == "1.2"


def test_zip_directory_lookup():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("zarr.json", "{}")
    with zipfile.ZipFile(buf) as zf:
        assert has_member(zf, "zarr.json") and not has_member(zf, "other")


def test_numcodecs_blosc_exports_the_functions_the_fast_encoder_calls():
    from maxrf.datastack import blosc, blosc_lz4

    assert blosc_function("blosc_compress_ctx") is not None
    assert blosc_function("LZ4_compress_fast") is not None
    assert blosc_function("no_such_function") is None
    assert blosc.fast_path() is None and blosc_lz4.available()
    # and the fast path writes what numcodecs writes
    data = np.arange(64 * 1024, dtype=np.uint16)
    codec = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)
    fast = bytes(blosc.BloscEncoder(codec).encode_view(data, "test"))
    assert fast == codec.encode(data)
