"""Registration to a photograph, from control points and automatically: the generator renders the
planted painting as a photo through a known transform (rotation, scale, perspective, a surround of
other paint, JPEG) with noisy control points; ``maxrf register`` recovers the transform (with or
without the points), stores it, and warps the maps onto the photo; a photo of another painting is
refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import run_maxrf

from maxrf.datastack import DataStack
from maxrf.demo import DemoSpec, generate_scan, photo_transform, render_photo
from maxrf.imaging.registration import apply, corner_errors, fit_transform
from maxrf.pipeline.runner import Runner, Scan

TRUE = photo_transform(scale=5.0, angle_deg=4.0, shift=(70.0, 45.0), perspective=2e-4)


@pytest.fixture(scope="module")
def painted(tmp_path_factory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("photo")
    generate_scan(folder / "p", DemoSpec(height=32, width=48, seed=4))
    Runner(folder / "p.datastack", {"plots": False}, Scan.open(folder / "p.raw")).run(
        ["element-maps", "bands"])
    photo = render_photo(folder / "p", TRUE, size=(260, 360), points=10, point_noise_px=0.5)
    return folder / "p.datastack", photo, folder / "p.points.csv"


@pytest.mark.parametrize("model, tolerance", [("homography", 0.5), ("affine", 1.5)])
def test_register_recovers_the_transform(painted, tmp_path, model, tolerance):
    stack, photo, points = painted
    copy = tmp_path / "p.datastack"
    copy.write_bytes(stack.read_bytes())
    r = run_maxrf("register", copy, photo, "--points", points, "--model", model)
    assert r.returncode == 0 and "residual rms" in r.stdout, r.stderr
    attrs = DataStack(copy).attrs("maxrf_registration")
    assert attrs["model"] == model and attrs["photo"]["width"] == 360
    corners = np.array([[-0.5, -0.5], [47.5, -0.5], [47.5, 31.5], [-0.5, 31.5]])
    err = np.linalg.norm(apply(attrs["matrix"], corners) - apply(TRUE, corners), axis=1)
    assert np.median(err) / 5.0 <= tolerance  # in scan pixels (5 photo px per scan pixel)
    assert DataStack(copy).read("maxrf_registration").shape[2] == 3  # the photo, for a viewer


def test_maps_warped_onto_the_photo(painted, tmp_path):
    import tifffile

    stack, photo, points = painted
    copy = tmp_path / "p.datastack"
    copy.write_bytes(stack.read_bytes())
    r = run_maxrf("register", copy, photo, "--points", points, "--model", "homography",
                  "--export", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    ds = DataStack(copy)
    el = ds.attrs("maxrf_elementmaps")["elements"][0]
    warped = tifffile.imread(tmp_path / "out" / f"{el}_on_photo.tif")
    assert warped.shape == (260, 360)
    m = ds.read("maxrf_elementmaps")[0]
    for col, row in ((10, 7), (30, 20), (44, 28)):  # a scan pixel's centre, seen in the photo
        x, y = apply(TRUE, np.array([[col, row]]))[0]
        assert warped[int(round(y)), int(round(x))] == pytest.approx(m[row, col])
    assert np.isnan(warped[0, 0])  # outside the scan
    assert (tmp_path / "out" / "overlay.png").stat().st_size > 10_000
    from PIL import Image

    on_scan = np.asarray(Image.open(tmp_path / "out" / "photo_on_scan.png"))
    f = on_scan.shape[0] // 32
    assert on_scan.shape == (32 * f, 48 * f, 3) and f >= 1  # the photo on the scan's grid


def test_butterfly_registrator_points_are_read(painted, tmp_path):
    """A control-point file saved by the Van Gogh Museum's Butterfly Registrator (photo as the
    target, an element-map TIFF of the scan's size as the moving image, which it resizes to the
    photo's width or height; Qt scene coordinates) gives the true transform."""
    stack, photo, _points = painted
    copy = tmp_path / "p.datastack"
    copy.write_bytes(stack.read_bytes())
    h, w, ph, pw = 32, 48, 260, 360
    factor = pw / w if w / h > pw / ph else ph / h
    scan_pts = np.array([[5.0, 4.0], [40.0, 6.0], [42.0, 27.0], [7.0, 25.0]])
    photo_pts = apply(TRUE, scan_pts)
    rows = [f"{x + 0.5}|{y + 0.5}|{(c + 0.5) * factor}|{(r + 0.5) * factor}"
            for (x, y), (c, r) in zip(photo_pts, scan_pts, strict=True)]
    csv = tmp_path / "Registration points - Pb to p.photo.csv"
    csv.write_text("\n".join(["Butterfly Registrator", "1.0", "control points",
                               "Assumes moving image(s) resized and padded to match target "
                               "image dimensions", "target", photo.name, "moving", "Pb.tif",
                               "x|y|x|y", *rows]) + "\n")
    r = run_maxrf("register", copy, photo, "--points", csv, "--model", "homography")
    assert r.returncode == 0, r.stderr
    found = np.array(DataStack(copy).attrs("maxrf_registration")["matrix"])
    np.testing.assert_allclose(found, TRUE / TRUE[2, 2], rtol=1e-6, atol=1e-8)


def test_a_16_bit_grey_photo_keeps_its_contrast(tmp_path):
    """A 16-bit grey TIFF (a scientific camera's) is scaled to its own range, not clipped white."""
    import tifffile

    from maxrf.imaging.registration import load_photo

    ramp = np.tile(np.linspace(1000, 60000, 80), (60, 1)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "g16.tif", ramp)
    got = load_photo(tmp_path / "g16.tif")
    assert got.shape == (60, 80, 3) and got.dtype == np.uint8
    assert got[:, 0].max() <= 5 and got[:, -1].min() >= 250 and 100 < got.mean() < 155


def test_the_fit_of_exact_points_is_exact():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (12, 2))
    for model, m in (("similarity", photo_transform(3.0, 10.0, (5, 6))),
                     ("affine", np.array([[2.0, 0.3, 4], [-0.2, 1.5, 9], [0, 0, 1]])),
                     ("homography", TRUE)):
        got = fit_transform(src, apply(m, src), model)
        np.testing.assert_allclose(got, m / m[2, 2], rtol=1e-6, atol=1e-9)


def test_bad_registration_input_is_one_line_and_writes_nothing(painted, tmp_path):
    stack, photo, points = painted
    copy = tmp_path / "p.datastack"
    copy.write_bytes(stack.read_bytes())
    two = tmp_path / "two.csv"
    two.write_text("1,2,3,4\n5,6,7,8\n")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    cases = [(("--points", two, "--model", "homography"), "needs at least 4 point pairs"),
             (("--points", tmp_path / "none.csv"), "photo_points: no such file")]
    for extra, words in cases:
        r = run_maxrf("register", copy, photo, *extra)
        assert r.returncode == 2 and words in r.stderr and r.stderr.count("\n") == 1, r.stderr
    r = run_maxrf("register", copy, junk, "--points", points)
    assert r.returncode == 2 and "not a readable image" in r.stderr
    assert "maxrf_registration" not in DataStack(copy)


def test_viewer_shows_the_photo_under_the_maps(painted, tmp_path):
    """The viewer resamples the registered photo onto the scan's grid (the colour at a scan
    pixel is the photo's where the transform puts it), and a real Chromium draws it under the
    maps with opacity and a swipe."""
    import io

    from browser import viewer_page
    from helpers import ROOT
    from PIL import Image
    from starlette.testclient import TestClient

    from maxrf.imaging.registration import load_photo
    from maxrf.viewer.server import create_app

    stack, photo, points = painted
    copy = tmp_path / "p.datastack"
    copy.write_bytes(stack.read_bytes())
    assert run_maxrf("register", copy, photo, "--points", points, "--model",
                     "homography").returncode == 0
    with TestClient(create_app(copy), base_url="http://127.0.0.1:8765") as client:
        info = client.get("/api/info").json()["photo"]
        assert info["name"] == photo.name and info["model"] == "homography"
        img = np.asarray(Image.open(io.BytesIO(client.get("/api/photo.png").content)))
    f = info["factor"]
    assert img.shape == (32 * f, 48 * f, 3)
    original = load_photo(photo).astype(float)
    for col, row in ((10, 7), (30, 20)):
        x, y = apply(TRUE, np.array([[col, row]]))[0]
        got = img[row * f + f // 2, col * f + f // 2].astype(float)
        want = original[int(round(y)) - 2: int(round(y)) + 3,
                        int(round(x)) - 2: int(round(x)) + 3].reshape(-1, 3).mean(axis=0)
        assert np.abs(got - want).max() < 40  # JPEG, noise, resampling
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with viewer_page(copy) as driver:
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.execute_script("return window.viewer && viewer.ready"))
        driver.find_element(By.ID, "photo").click()
        wait.until(lambda d: d.execute_script("return viewer.photoLoaded === true"))
        driver.execute_script("const s = document.getElementById('swipe'); s.value = 0.5;"
                              "s.dispatchEvent(new Event('input'));")
        drawn = driver.execute_script("return viewer.drawn.photo")
        assert drawn["swipe"] == 0.5 and 0 < drawn["alpha"] < 1
        driver.save_screenshot(str(ROOT / "test-artifacts" / "viewer-photo.png"))


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory) -> Path:
    """A processed 56 × 72 scan of a mosaic of paints (sharp boundaries between paints)."""
    folder = tmp_path_factory.mktemp("mosaic")
    generate_scan(folder / "m", DemoSpec(height=56, width=72, seed=3, paints=5))
    Runner(folder / "m.datastack", {"plots": False}, Scan.open(folder / "m.raw")).run(
        ["element-maps", "bands"])
    return folder / "m"


@pytest.mark.parametrize("true, size", [
    (photo_transform(4.0, 93.0, (330, 40), 1e-4), (420, 560)),
    (photo_transform(3.0, 184.0, (420, 300), 0.0), (380, 520)),
])
def test_automatic_registration_finds_the_transform(mosaic, tmp_path, true, size):
    """No control points: the scan's element maps are registered to the photo (quarter turns
    plus a few degrees, perspective, the painting going on past the scan) within half a scan
    pixel; a second run with the same photo is cached."""
    copy = tmp_path / "m.datastack"
    copy.write_bytes(mosaic.with_suffix(".datastack").read_bytes())
    (tmp_path / "m.truth.npz").write_bytes(mosaic.with_suffix(".truth.npz").read_bytes())
    photo = render_photo(tmp_path / "m", true, size, seed=5)
    r = run_maxrf("register", copy, photo)
    assert r.returncode == 0 and "automatic, correlation" in r.stdout, r.stderr
    attrs = DataStack(copy).attrs("maxrf_registration")
    assert attrs["model"] == "affine" and attrs["method"].startswith("automatic")
    assert attrs["correlation"] > 3 * attrs["chance_correlation"]
    err = corner_errors(attrs["matrix"], true, (56, 72))
    assert np.median(err) <= 0.5 and err.max() <= 1.5, err
    again = run_maxrf("register", copy, photo)
    assert again.returncode == 0 and "(cached)" in again.stdout
    from starlette.testclient import TestClient

    from maxrf.viewer.server import create_app

    with TestClient(create_app(copy), base_url="http://127.0.0.1:8765") as client:
        info = client.get("/api/info").json()["photo"]  # the viewer shows how it was found
        assert info["quality"].startswith("automatic, correlation")
        assert client.get("/api/photo.png").status_code == 200


def test_rough_control_points_are_refined_by_the_images(mosaic, tmp_path):
    """Four control points picked roughly (3 photo px of noise) give a transform a pixel off;
    ``--refine`` matches the maps to the photo from there and lands within half a pixel."""
    true = photo_transform(4.0, 2.0, (40, 30), 1e-4)
    (tmp_path / "m.truth.npz").write_bytes(mosaic.with_suffix(".truth.npz").read_bytes())
    photo = render_photo(tmp_path / "m", true, (320, 400), points=4, point_noise_px=3.0, seed=3)
    points = tmp_path / "m.points.csv"
    errors = {}
    for extra in ((), ("--refine",)):
        copy = tmp_path / f"m{len(extra)}.datastack"
        copy.write_bytes(mosaic.with_suffix(".datastack").read_bytes())
        r = run_maxrf("register", copy, photo, "--points", points, "--model", "homography",
                      *extra)
        assert r.returncode == 0, r.stderr
        attrs = DataStack(copy).attrs("maxrf_registration")
        errors[bool(extra)] = corner_errors(attrs["matrix"], true, (56, 72))
    assert "refined" in attrs["method"] and "refined: correlation" in r.stdout
    assert np.median(errors[True]) <= 0.5 and errors[True].max() <= 1.5, errors[True]
    assert errors[True].max() < errors[False].max(), errors


def test_a_photo_of_another_painting_is_refused(mosaic, tmp_path):
    """A photo of a different painting: one line saying so (with the hint to give points),
    exit code 2, nothing written."""
    other = tmp_path / "o"
    generate_scan(other, DemoSpec(height=56, width=72, seed=11, paints=5, channels=256))
    photo = render_photo(other, photo_transform(4.0, 2.0, (40, 30)), (400, 520), seed=2)
    copy = tmp_path / "m.datastack"
    copy.write_bytes(mosaic.with_suffix(".datastack").read_bytes())
    r = run_maxrf("register", copy, photo)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "cannot register" in r.stderr and "--points" in r.stderr
    assert "maxrf_registration" not in DataStack(copy)


def test_a_chance_likeness_of_another_painting_is_refused():
    """Another mosaic of the same paints can be placed (a corner of the scan on a corner of the
    photo) where a few edges line up better than the scan's own photo correlates with it; it
    matches in one way only (its second canonical correlation is near chance) and is refused."""
    from maxrf.demo import photograph, planted_maps
    from maxrf.imaging.autoregister import auto_register, scan_images
    from maxrf.imaging.geometry import RegistrationError

    h, w = 96, 128
    _els, maps, _paints = planted_maps(DemoSpec(height=h, width=w, seed=3, paints=6))
    rng = np.random.default_rng(3)
    noisy = [rng.poisson(np.clip(m, 0, None) * 40 / maps.max()).astype(np.float32) for m in maps]
    # seed 13 reached a correlation of 0.75 (0.17 by chance) before the second test
    elements, other, _ = planted_maps(DemoSpec(height=h, width=w, seed=13, paints=6))
    photo = photograph(elements, other, photo_transform(4.0, 3.0, (60, 40), 0.0), (600, 800),
                       seed=1)
    with pytest.raises(RegistrationError, match="one way only|best correlation|no plausible"):
        auto_register(scan_images(noisy), photo, "affine")


def test_a_grey_photo_has_one_canonical_correlation():
    """A grey photo reaches registration as three equal channels: it has one canonical
    correlation with the maps, so the second one is not asked of it (it would be noise)."""
    from maxrf.imaging.autoregister import _cca

    rng = np.random.default_rng(0)
    maps = rng.normal(size=(5000, 4))
    rgb = maps[:, :3] @ rng.normal(size=(3, 3)) + 0.1 * rng.normal(size=(5000, 3))
    grey = np.repeat(rgb.mean(axis=1, keepdims=True), 3, axis=1)
    assert len(_cca(maps, rgb)[2]) == 3 and len(_cca(maps, grey)[2]) == 1
    assert _cca(maps, grey)[2][0] > 0.9
