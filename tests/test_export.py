"""`maxrf export`: a clean Lispix copy of the raw counts that Ripple readers open, HyperSpy
``.hspy`` files, XRF-Explorer's ``.dms`` element cubes and Fiji TIFFs, each read back the way its
tool reads it."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import run_maxrf

from maxrf.datastack import DataStack
from maxrf.demo import DemoSpec, generate_scan
from maxrf.io.raw import open_raw, open_scan
from maxrf.pipeline.runner import Runner, Scan


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    generate_scan(folder / "s", DemoSpec(height=20, width=36, seed=5, layout="B"))
    out = folder / "s.datastack"
    Runner(out, {"plots": False}, Scan.open(folder / "s.raw")).run(["element-maps"])
    return folder / "s.raw", out


def test_the_rpl_copy_holds_the_counts_and_the_axis(calibrated, tmp_path):
    raw, stack = calibrated
    r = run_maxrf("export", stack, "--to", "rpl", "-o", tmp_path / "copy")
    assert r.returncode == 0 and "copy.rpl" in r.stdout, r.stderr
    scan = open_scan(tmp_path / "copy.raw")  # the exact size check passes
    np.testing.assert_array_equal(np.asarray(open_raw(tmp_path / "copy.raw")),
                                  DataStack(stack).read("maxrf_raw"))
    np.testing.assert_array_equal(np.asarray(open_raw(tmp_path / "copy.raw")),
                                  np.asarray(open_raw(raw)))
    axis = DataStack(stack).read("maxrf_energies")
    got = scan.header.energy
    fitted = got.offset_kev + got.gain_kev * np.arange(axis.size)
    assert np.abs(fitted - axis).max() < 0.002  # keV, within the header's 6 digits
    text = (tmp_path / "copy.rpl").read_text()
    assert "depth-scale\t" in text and "record-by\tvector" in text and "depthscale" not in text


def test_rosettasciio_reads_the_copy(calibrated, tmp_path):
    rsciio = pytest.importorskip("rsciio.ripple")
    raw, stack = calibrated
    assert run_maxrf("export", stack, "-o", tmp_path / "c").returncode == 0
    (signal,) = rsciio.file_reader(str(tmp_path / "c.rpl"))
    np.testing.assert_array_equal(np.asarray(signal["data"]), np.asarray(open_raw(raw)))


def test_nothing_to_export_is_one_line(tmp_path):
    stack = tmp_path / "e.datastack"
    DataStack(stack).append(np.zeros(3), "other")
    r = run_maxrf("export", stack, "-o", tmp_path / "x")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "maxrf_raw" in r.stderr
    assert not list(tmp_path.glob("x.*"))


def test_hspy_files_hold_the_counts_axes_and_maps(calibrated, tmp_path):
    """Read back with rosettasciio's hspy reader, the code ``hs.load`` runs."""
    from rsciio.hspy import file_reader

    raw, stack = calibrated
    r = run_maxrf("export", stack, "--to", "hspy", "-o", tmp_path / "h")
    assert r.returncode == 0, r.stderr
    (cube,) = file_reader(str(tmp_path / "h.hspy"))
    np.testing.assert_array_equal(np.asarray(cube["data"]), np.asarray(open_raw(raw)))
    y, x, energy = cube["axes"]
    assert (y["name"], x["name"], energy["name"], energy["units"]) == ("y", "x", "Energy", "keV")
    assert cube["metadata"]["Signal"]["signal_type"] == "EDS_SEM"
    axis = DataStack(stack).read("maxrf_energies")
    fitted = energy["offset"] + energy["scale"] * np.arange(axis.size)
    assert np.abs(fitted - axis).max() < 0.002
    (maps,) = file_reader(str(tmp_path / "h_elementmaps.hspy"))
    ds = DataStack(stack)
    elements = ds.attrs("maxrf_elementmaps")["elements"]
    assert list(maps["metadata"]["Sample"]["elements"]) == elements
    np.testing.assert_allclose(maps["data"], ds.read("maxrf_elementmaps"), rtol=1e-6)
    assert [a["navigate"] for a in maps["axes"]] == [True, False, False]


def test_zspy_directories_read_like_hspy(calibrated, tmp_path):
    """rosettasciio's zspy reader (what ``hs.load`` runs) opens the zarr v2 tree written with
    zarr 3: the same data, axes and metadata as the hspy files."""
    from rsciio.zspy import file_reader

    raw, stack = calibrated
    r = run_maxrf("export", stack, "--to", "zspy", "-o", tmp_path / "z")
    assert r.returncode == 0 and "z.zspy" in r.stdout, r.stderr
    (cube,) = file_reader(str(tmp_path / "z.zspy"))
    np.testing.assert_array_equal(np.asarray(cube["data"]), np.asarray(open_raw(raw)))
    assert [a["name"] for a in cube["axes"]] == ["y", "x", "Energy"]
    assert cube["metadata"]["Signal"]["signal_type"] == "EDS_SEM"
    (maps,) = file_reader(str(tmp_path / "z_elementmaps.zspy"))
    ds = DataStack(stack)
    assert list(maps["metadata"]["Sample"]["elements"]) == ds.attrs("maxrf_elementmaps")[
        "elements"]
    np.testing.assert_allclose(np.asarray(maps["data"]), ds.read("maxrf_elementmaps"), rtol=1e-6)
    again = run_maxrf("export", stack, "--to", "zspy", "-o", tmp_path / "z")  # replaced whole
    assert again.returncode == 0 and not list(tmp_path.glob(".z*"))


def read_dms_as_xrf_explorer(path):
    """XRF-Explorer's parser (``server/file_system/cubes/convert_dms.py``), step by step: skip
    a line, read ``w h c``, float32 (c, h, w) after the header, names after the data."""
    with open(path, "rb") as f:
        f.readline()
        w, h, c = (int(v) for v in f.readline().decode("ascii").strip().split())
        header_size = f.tell()
    cube = np.fromfile(path, offset=header_size, count=w * h * c, dtype=np.float32)
    with open(path, "rb") as f:
        f.seek(header_size + w * h * c * 4)
        names = []
        while line := f.readline():
            names.append(line.decode("utf-8").strip())
    return cube.reshape(c, h, w), names


def test_dms_opens_as_xrf_explorer_reads_it(calibrated, tmp_path):
    _, stack = calibrated
    r = run_maxrf("export", stack, "--to", "dms", "-o", tmp_path / "cube")
    assert r.returncode == 0 and "cube.dms" in r.stdout, r.stderr
    cube, names = read_dms_as_xrf_explorer(tmp_path / "cube.dms")
    ds = DataStack(stack)
    assert names == ds.attrs("maxrf_elementmaps")["elements"]
    np.testing.assert_allclose(cube, ds.read("maxrf_elementmaps"), rtol=1e-6)


def test_tiff_export_is_counts_with_element_labels(calibrated, tmp_path):
    import tifffile

    _, stack = calibrated
    assert run_maxrf("export", stack, "--to", "tiff", "-o", tmp_path / "t").returncode == 0
    ds = DataStack(stack)
    elements = ds.attrs("maxrf_elementmaps")["elements"]
    with tifffile.TiffFile(tmp_path / "t" / "elementmaps.tif") as tif:
        assert tif.imagej_metadata["Labels"] == elements
        np.testing.assert_allclose(tif.asarray(), ds.read("maxrf_elementmaps"), rtol=1e-6)


def test_maps_exports_without_maps_are_one_line(tmp_path):
    stack = tmp_path / "e.datastack"
    DataStack(stack).append(np.zeros(3), "other")
    for fmt in ("dms", "tiff"):
        r = run_maxrf("export", stack, "--to", fmt, "-o", tmp_path / "x")
        assert r.returncode != 0 and r.stderr.count("\n") == 1 and "maxrf maps" in r.stderr
    assert not list(tmp_path.glob("x*"))
