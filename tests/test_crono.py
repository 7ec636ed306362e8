"""Bruker Crono HDF5 scans: read as cronomaxrf gathers them (``/XRF/Spectra`` rows picked by
``/XRF/SpectraSelectedIndex``), converted by the same chain, bad files refused in one line."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import run_maxrf

from maxrf.datastack import DataStack
from maxrf.demo import DemoSpec, generate_scan
from maxrf.errors import HeaderError
from maxrf.io.raw import open_raw, open_scan


def write_crono(path: Path, cube: np.ndarray, energies: np.ndarray, missing=(),
                shuffle_seed: int = 0) -> np.ndarray:
    """A Crono file of ``cube`` (h, w, c): the measured spectra in a shuffled order plus a few
    extra ones (a real scan measures more than the grid keeps), the index map pointing at
    each pixel's; ``missing`` pixels index -1. Returns the index map."""
    h, w, c = cube.shape
    rng = np.random.default_rng(shuffle_seed)
    order = rng.permutation(h * w)
    extra = rng.poisson(3.0, (7, c)).astype(cube.dtype)
    spectra = np.concatenate([cube.reshape(-1, c)[order], extra])
    index = np.empty(h * w, np.int64)
    index[order] = np.arange(h * w)
    index = index.reshape(h, w)
    for r, col in missing:
        index[r, col] = -1
    with h5py.File(path, "w") as f:
        xrf = f.create_group("XRF")
        xrf.create_dataset("Spectra", data=spectra, chunks=(min(64, len(spectra)), c))
        xrf.create_dataset("EnergyVector", data=energies.astype(np.float32))
        xrf.create_dataset("SpectraSelectedIndex",
                           data=np.stack([index, index], axis=-1).astype(np.int32))
        xrf.attrs["TubeVoltage"] = np.array([50.0])
        xrf.attrs["Anode"] = np.array([b"R", b"h"])
    return index


@pytest.fixture(scope="module")
def crono_scan(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crono")
    generate_scan(folder / "src", DemoSpec(height=24, width=40, seed=11))
    cube = np.asarray(open_raw(folder / "src.raw"))
    energies = -0.956 + 0.010002 * np.arange(cube.shape[2])
    path = folder / "scan.hdf5"
    index = write_crono(path, cube, energies, missing=[(3, 5)])
    expected = cube.copy()
    expected[3, 5] = 0
    return path, expected, index


def test_the_crono_cube_is_cronomaxrf_s_gather(crono_scan):
    path, expected, index = crono_scan
    scan = open_scan(path)
    assert scan.header.shape == expected.shape and scan.metadata["format"] == "crono-hdf5"
    assert scan.metadata["TubeVoltage"] == 50.0 and scan.metadata["Anode"] == "Rh"
    assert abs(scan.header.energy.offset_kev + 0.956) < 1e-5
    f = scan.file()
    np.testing.assert_array_equal(f.read_block(slice(None), slice(None)), expected)
    np.testing.assert_array_equal(f.read_block(slice(2, 9), slice(5, 17)), expected[2:9, 5:17])
    assert f.missing.tolist() == [[3, 5]]
    assert scan.key().startswith("scan-crono-") and scan.key() == open_scan(path).key()
    # cronomaxrf's gridify: dask_spectra.vindex[SpectraSelectedIndex[:, :, 0]]
    with h5py.File(path) as h5:
        spectra = h5["/XRF/Spectra"][...]
    ok = index >= 0
    np.testing.assert_array_equal(spectra[index[ok]], expected[ok])


@pytest.mark.parametrize("storage", ["chunked", "contiguous", "gzip", "big-endian"])
@pytest.mark.parametrize("order", ["raster", "serpentine", "random", "mixed"])
def test_every_spectra_order_reads_the_same_cube(tmp_path, order, storage):
    """Spectra stored in scan order, serpentine (return rows reversed), random or a mix (runs
    read straight into the block, scattered rows one by one), with a missing pixel; stored so
    that positioned reads apply (chunked, contiguous) or through h5py (compressed, big-endian:
    no direct path)."""
    rng = np.random.default_rng(5)
    h, w, c = 9, 13, 16
    cube = rng.integers(0, 60_000, (h, w, c)).astype(np.uint16)
    index = np.arange(h * w).reshape(h, w)
    if order == "serpentine":
        index[1::2] = index[1::2, ::-1]
    elif order == "random":
        index = rng.permutation(h * w).reshape(h, w)
    elif order == "mixed":
        index[1::2] = index[1::2, ::-1]
        index[4:6] = rng.permutation(index[4:6].ravel()).reshape(2, w)
    spectra = np.empty((h * w + 3, c), np.uint16)
    spectra[index.ravel()] = cube.reshape(-1, c)
    spectra[h * w:] = 7
    index[2, 3] = -1
    path = tmp_path / "o.hdf5"
    with h5py.File(path, "w") as f:
        kw = {"contiguous": {}, "gzip": {"chunks": (5, c), "compression": "gzip"},
              "big-endian": {"chunks": (5, c), "dtype": ">u2"}}.get(storage, {"chunks": (5, c)})
        f.create_dataset("XRF/Spectra", data=spectra, **kw)
        f.create_dataset("XRF/EnergyVector", data=np.arange(c, dtype=np.float32) * 0.01)
        f.create_dataset("XRF/SpectraSelectedIndex", data=index[:, :, None].astype(np.int32))
    expected = cube.copy()
    expected[2, 3] = 0
    f = open_scan(path).file()
    assert (f.layout is not None) == (storage in ("chunked", "contiguous"))
    for rows, cols in [(slice(None), slice(None)), (slice(1, 8), slice(2, 11)),
                       (slice(4, 5), slice(0, 13)), (slice(2, 3), slice(3, 4))]:
        np.testing.assert_array_equal(f.read_block(rows, cols), expected[rows, cols])


def test_a_crono_scan_converts_through_the_cli(crono_scan, tmp_path):
    path, expected, _ = crono_scan
    out = tmp_path / "c.datastack"
    r = run_maxrf("convert", path, "-o", out)
    assert r.returncode == 0, r.stderr
    ds = DataStack(out)
    np.testing.assert_array_equal(ds.read("maxrf_raw"), expected)
    source = ds.attrs("maxrf_raw")["source"]
    assert source["metadata"]["format"] == "crono-hdf5" and source["missing_pixels"] == [[3, 5]]


@pytest.mark.parametrize("damage", ["truncated", "no-index", "not-hdf5", "index-past-end"])
def test_bad_crono_files_are_one_line(tmp_path, crono_scan, damage):
    path, _, _ = crono_scan
    bad = tmp_path / "bad.hdf5"
    if damage == "truncated":
        bad.write_bytes(path.read_bytes()[:3000])
    elif damage == "not-hdf5":
        bad.write_bytes(b"plain text, not HDF5\n" * 50)
    elif damage == "index-past-end":
        cube = np.ones((2, 3, 8), np.uint16)
        write_crono(bad, cube, np.arange(8.0))
        with h5py.File(bad, "a") as f:
            f["/XRF/SpectraSelectedIndex"][1, 2, 0] = 999
    else:
        with h5py.File(bad, "w") as f:
            f.create_dataset("XRF/Spectra", data=np.zeros((4, 8), np.uint16))
            f.create_dataset("XRF/EnergyVector", data=np.arange(8.0))
    with pytest.raises(HeaderError):
        open_scan(bad)
    r = run_maxrf("convert", bad, "-o", tmp_path / "x.datastack")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "x.datastack").exists()


def test_info_describes_a_crono_file(crono_scan):
    import json

    path, expected, _ = crono_scan
    r = run_maxrf("info", path, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (info["height"], info["width"], info["depth"]) == expected.shape
    assert info["metadata"]["format"] == "crono-hdf5"
    assert "Bruker Crono HDF5" in run_maxrf("info", path).stdout
