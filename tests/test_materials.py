"""Materials maps: on a generated mosaic of paints (pigment mixtures laid thicker and thinner),
the cached ``materials`` step finds the planted paints (adjusted Rand index ≥ 0.9), its spectra
and compositions are the plain means, and the CLI, the viewer and the exports show it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from helpers import run_maxrf

from maxrf.datastack import DataStack
from maxrf.demo import DemoSpec, generate_scan
from maxrf.pipeline.materials import adjusted_rand_index, map_materials
from maxrf.pipeline.runner import process


@pytest.fixture(scope="module", params=[(1, 5)], ids=["5-paints"])
def mosaic(request, tmp_path_factory) -> tuple[Path, np.ndarray, int]:
    seed, paints = request.param
    folder = tmp_path_factory.mktemp("mosaic")
    generate_scan(folder / "m", DemoSpec(height=64, width=96, seed=seed, paints=paints,
                                         layout="B"))
    runs = process(folder / "m.raw", plots=False, progress=False)
    assert [r.step for r in runs][-1] == "materials"  # the chain ends with it
    truth = np.load(folder / "m.truth.npz")["materials"]
    return folder / "m.datastack", truth, paints


def test_the_planted_paints_are_found(mosaic):
    path, truth, paints = mosaic
    ds = DataStack(path)
    labels = ds.read("maxrf_materials")
    attrs = ds.attrs("maxrf_materials")
    assert attrs["k"] == paints and attrs["chosen"] == "bic elbow"
    assert adjusted_rand_index(labels, truth) >= 0.9
    # numbered by area, largest first, and every pixel has one
    area = np.bincount(labels.ravel())
    assert np.all(np.diff(area) <= 0) and area.sum() == labels.size


def test_spectra_and_compositions_are_the_plain_means(mosaic):
    path, _truth, _paints = mosaic
    ds = DataStack(path)
    labels = ds.read("maxrf_materials")
    raw = ds.read("maxrf_raw").astype(np.float64)
    maps = ds.read("maxrf_elementmaps")
    spectra = ds.read("maxrf_materials_spectra")
    comp = ds.read("maxrf_materials_composition")
    for m in range(spectra.shape[0]):
        where = labels == m
        np.testing.assert_allclose(spectra[m], raw[where].mean(axis=0), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(comp[m], maps[:, where].mean(axis=1), rtol=1e-4, atol=1e-3)


def test_adjusted_rand_index():
    a = np.array([0, 0, 1, 1, 2, 2])
    assert adjusted_rand_index(a, a) == 1.0
    assert adjusted_rand_index(a, np.array([5, 5, 3, 3, 9, 9])) == 1.0  # names do not matter
    assert adjusted_rand_index(a, np.array([0, 1, 0, 1, 0, 1])) < 0.1


def test_cli_materials_given_k_cached_and_bad_input(mosaic, tmp_path):
    path, _truth, _paints = mosaic
    r = run_maxrf("materials", path)
    assert r.returncode == 0 and "(cached)" in r.stdout, r.stdout + r.stderr
    r = run_maxrf("materials", path, "--k", "2")
    assert r.returncode == 0 and r.stdout.startswith("2 materials") and "as given" in r.stdout
    assert DataStack(path).attrs("maxrf_materials")["k"] == 2
    r = run_maxrf("materials", path, "--k", "0")
    assert r.returncode == 2 and "from 1 to 64" in r.stderr and r.stderr.count("\n") == 1
    empty = tmp_path / "e.datastack"
    DataStack(empty).append(np.zeros(3), "other")
    r = run_maxrf("materials", empty)
    assert r.returncode == 2 and "maxrf maps" in r.stderr and r.stderr.count("\n") == 1
    with pytest.raises(Exception, match="element maps"):
        map_materials(empty)


def test_viewer_and_export_show_the_materials(mosaic, tmp_path):
    from starlette.testclient import TestClient

    from maxrf.figures.mapexport import export_all
    from maxrf.viewer.server import create_app

    path, _truth, _paints = mosaic
    ds = DataStack(path)
    with TestClient(create_app(path), base_url="http://127.0.0.1:8765") as client:
        info = client.get("/api/info").json()
        attrs = ds.attrs("maxrf_materials")
        assert [m["pixels"] for m in info["materials"]] == attrs["pixels"]
        got = np.load(io.BytesIO(client.get("/api/materials.npy").content))
        np.testing.assert_array_equal(got, ds.read("maxrf_materials"))
        spec = client.get("/api/material_spectrum?m=0").json()
        np.testing.assert_allclose(spec["counts"], ds.read("maxrf_materials_spectra")[0],
                                   rtol=1e-6)
        assert client.get("/api/material_spectrum?m=99").status_code == 400
    out = export_all(path, tmp_path / "out")
    import tifffile

    assert tmp_path / "out" / "materials.png" in out
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "materials.tif"),
                                  ds.read("maxrf_materials"))
