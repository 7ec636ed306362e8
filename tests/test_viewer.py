"""``maxrf view``: API values equal direct numpy reads of the datastack, bad requests give 400 and
the server keeps serving, and a real headless Chromium clicks a pixel and drags a band."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from browser import browser, viewer_page
from helpers import ROOT, free_port, start_viewer, viewer_stack, wait_for_viewer

from maxrf.datastack import DataStack
from maxrf.demo import DemoSpec, generate_scan
from maxrf.pipeline.bands import BandReader
from maxrf.pipeline.convert import convert


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Path:
    return viewer_stack(tmp_path_factory.mktemp("view"),
                        DemoSpec(height=40, width=72, seed=6, counts=3000))


@pytest.fixture(scope="module")
def client(stack):
    from starlette.testclient import TestClient

    from maxrf.viewer.server import create_app

    with TestClient(create_app(stack), base_url="http://127.0.0.1:8765") as c:
        yield c


@pytest.fixture(scope="module")
def raw(stack) -> np.ndarray:
    return DataStack(stack).read("maxrf_raw").astype(np.int64)


def test_band_reader_equals_numpy(stack, raw):
    """A small scan's bands are exact (the edge channels read from its counts); a big one's
    edges move to the nearest boundaries of 8 channels (outward when asked), never empty
    (``exact_bytes=0`` makes this one behave as a big one); rectangles exact."""
    br = BandReader(stack)
    c = raw.shape[-1]
    assert br.exact and br.counts is None and br.group == 8
    for lo, hi in [(0, c), (0, 1), (31, 33), (32, 64), (33, 63), (5, 3000), (100, 101),
                   (4000, c), (63, 129)]:
        assert br.channels_of(lo, hi) == (lo, hi)
        np.testing.assert_array_equal(br.band(lo, hi), raw[..., lo:hi].sum(-1), err_msg=(lo, hi))
    big = BandReader(stack, exact_bytes=0)
    assert not big.exact
    for (lo, hi), want in [((0, c), (0, c)), ((0, 1), (0, 8)), ((31, 33), (32, 40)),
                           ((32, 64), (32, 64)), ((33, 63), (32, 64)), ((5, 3000), (8, 3000)),
                           ((100, 101), (96, 104)), ((4000, c), (4000, c)),
                           ((63, 129), (64, 128)), ((4093, c), (4088, c))]:
        assert big.channels_of(lo, hi) == want, (lo, hi)
        np.testing.assert_array_equal(big.band(lo, hi), raw[..., want[0]:want[1]].sum(-1),
                                      err_msg=(lo, hi))
    assert big.channels_of(33, 63, outward=True) == (32, 64)
    assert big.channels_of(97, 99, outward=True) == (96, 104)
    for r0, r1, c0, c1 in [(0, 40, 0, 72), (3, 37, 5, 70), (16, 32, 16, 48), (17, 18, 30, 31),
                           (0, 15, 0, 72), (1, 40, 17, 33)]:
        np.testing.assert_array_equal(br.rect_sum(r0, r1, c0, c1),
                                      raw[r0:r1, c0:c1].sum((0, 1)), err_msg=(r0, r1, c0, c1))


def test_info_and_spectra(client, stack, raw):
    ds = DataStack(stack)
    info = client.get("/api/info").json()
    assert (info["height"], info["width"], info["channels"]) == raw.shape
    e = ds.read("maxrf_energies")
    assert info["energy_kev"] == pytest.approx([e[0], e[-1]])
    assert "Pb" in info["elements"] and info["lines"]["Pb"][0][2] == "L3M5"
    s = client.get("/api/spectrum?row=7&col=41").json()
    assert s["counts"] == raw[7, 41].tolist()
    np.testing.assert_allclose(s["smoothed"], ds.array("maxrf_cube")[7, 41, :], rtol=1e-6)
    assert len(s["fit"]) == raw.shape[-1] and min(s["fit"]) >= 0
    assert s["fit_counts"]["Pb"] >= 0 and len(s["energy_kev"]) == raw.shape[-1]
    m = client.get("/api/mean_spectrum?r0=3&r1=37&c0=5&c1=70").json()
    np.testing.assert_allclose(m["counts"], raw[3:37, 5:70].mean((0, 1)), rtol=1e-12)
    assert m["pixels"] == 34 * 65 and "fit" in m and "smoothed" in m


def test_band_images(client, stack, raw):
    import io

    e = DataStack(stack).read("maxrf_energies")
    assert client.get("/api/info").json()["band_edges_kev"] is None  # a small scan: exact
    for lo_kev, hi_kev in [(6.2, 6.6), (0.0, 40.0), (10.3, 10.8), (1.234, 1.25), (-5, 100)]:
        r = client.get(f"/api/band.npy?lo_kev={lo_kev}&hi_kev={hi_kev}")
        assert r.status_code == 200
        img = np.load(io.BytesIO(r.content))
        sel = (e >= lo_kev) & (e < hi_kev)
        np.testing.assert_array_equal(img, raw[..., sel].sum(-1), err_msg=(lo_kev, hi_kev))
    for url in ("/api/band.png?lo_kev=6.2&hi_kev=6.6", "/api/total.png", "/api/map.png?element=Pb",
                "/api/composite.png?elements=Pb,Hg,Cu&colors=red,%2300ff00,blue&gains=1,2,0.5",
                "/api/map.png?element=pb&vmax=50"):
        r = client.get(url)
        assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n", url
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(client.get("/api/composite.png?elements=Pb,Hg").content))
    assert img.size == (72, 40) and img.mode == "RGB"


@pytest.mark.parametrize("url, words", [
    ("/api/spectrum?row=40&col=0", "outside the scan"),
    ("/api/spectrum?row=-1&col=0", "outside the scan"),
    ("/api/spectrum?row=1.5&col=0", "must be a number"),
    ("/api/spectrum?col=0", "missing parameter 'row'"),
    ("/api/mean_spectrum?r0=5&r1=5&c0=0&c1=3", "non-empty"),
    ("/api/mean_spectrum?r0=0&r1=41&c0=0&c1=3", "inside 40 x 72"),
    ("/api/band.png?lo_kev=6&hi_kev=6", "must be below"),
    ("/api/band.npy?lo_kev=abc&hi_kev=6", "must be a number"),
    ("/api/band.npy?lo_kev=nan&hi_kev=6", "must be finite"),
    ("/api/map.png?element=Xx", "no map for element 'Xx'"),
    ("/api/composite.png?elements=", "1 to 4 elements"),
    ("/api/composite.png?elements=Pb,Hg,Cu,Fe,Ca", "1 to 4 elements"),
    ("/api/composite.png?elements=Pb&colors=mauve", "unknown colour"),
    ("/api/composite.png?elements=Pb,Hg&gains=1", "2 elements but 1 gains"),
])
def test_bad_requests_are_400_one_line(client, url, words):
    r = client.get(url)
    assert r.status_code == 400, (url, r.text)
    body = r.json()
    assert words in body["error"] and "\n" not in body["error"]
    assert client.get("/api/info").status_code == 200  # still serving



@pytest.fixture(scope="module")
def server(stack):
    url, proc = start_viewer(stack, "--pixel-size-mm", "0.5")
    yield url, proc
    proc.terminate()
    proc.wait(timeout=20)


def test_cli_serves_and_stops_cleanly(server):
    url, proc = server
    assert urllib.request.urlopen(url).read().startswith(b"<!doctype html>")
    assert urllib.request.urlopen(url + "viewer.js").read().startswith(b"//")


def test_view_without_band_layers_builds_them(tmp_path):
    generate_scan(tmp_path / "n", DemoSpec(height=16, width=32, channels=512, gain=0.08))
    convert(tmp_path / "n.raw", progress=False)
    cmd = [sys.executable, "-m", "maxrf.cli", "view", str(tmp_path / "n.datastack")]
    proc = subprocess.Popen([*cmd, "--no-browser", "--port", str(free_port())], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = proc.stdout.readline()
        assert "building the viewer's band layers" in first
        second = proc.stdout.readline()
        assert "maxrf viewer of" in second and "http://127.0.0.1:" in second
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert "maxrf_bandcumsum" in DataStack(tmp_path / "n.datastack")
    r = subprocess.run([*cmd[:-1], str(tmp_path / "none.datastack")], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not found" in r.stderr


def test_browser_click_pixel_and_drag_band(server, raw):
    """As a person would: the page loads an image, a click on a pixel plots its spectrum, a drag
    along the spectrum shows that energy band's image; a screenshot is kept."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _proc = server
    driver = browser()
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.execute_script(
            "return window.viewer && viewer.ready && viewer.imageLoads >= 1"))
        canvas = driver.find_element(By.ID, "image")
        row, col = 21, 50
        x, y = driver.execute_script(f"return viewer.pixelToCanvas({row}, {col})")
        w, h = canvas.size["width"], canvas.size["height"]
        ActionChains(driver).move_to_element_with_offset(
            canvas, int(x - w / 2), int(y - h / 2)).click().perform()
        wait.until(lambda d: d.execute_script(
            "return viewer.spectrum && viewer.spectrum.row !== undefined"))
        got = driver.execute_script("return [viewer.spectrum.row, viewer.spectrum.col]")
        assert got == [row, col]
        counts = driver.execute_script("return viewer.spectrum.counts")
        assert counts == raw[row, col].tolist()
        assert "pixel (row 21, col 50)" in driver.find_element(By.ID, "what").text
        loads = driver.execute_script("return viewer.imageLoads")
        spectrum = driver.find_element(By.ID, "spectrum")
        x0 = driver.execute_script("return viewer.energyToCanvas(6.2)")
        x1 = driver.execute_script("return viewer.energyToCanvas(6.7)")
        sw = spectrum.size["width"]
        (ActionChains(driver)
         .move_to_element_with_offset(spectrum, int(x0 - sw / 2), 0).click_and_hold()
         .move_by_offset(int(x1 - x0), 0).release().perform())
        wait.until(lambda d: d.execute_script(f"return viewer.imageLoads > {loads}"))
        band = driver.execute_script("return viewer.band")
        assert 6.1 < band["lo_kev"] < 6.3 and 6.6 < band["hi_kev"] < 6.8
        assert "band.npy" in driver.execute_script("return viewer.imageUrl")
        assert "band" in driver.find_element(By.ID, "status").text
        out = ROOT / "test-artifacts"
        out.mkdir(exist_ok=True)
        driver.save_screenshot(str(out / "viewer.png"))
        assert (out / "viewer.png").stat().st_size > 20_000
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()


def test_ctrl_c_stops_the_viewer_cleanly(stack):
    import signal

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "maxrf.cli", "view", str(stack), "--no-browser",
                             "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert f"http://127.0.0.1:{port}/" in proc.stdout.readline()
    wait_for_viewer(f"http://127.0.0.1:{port}/")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=15) == 0
    assert "Traceback" not in proc.stderr.read()


def test_browser_image_pane_reads_without_asking(server, stack):
    """What a person needs to read a map: a colour bar in counts up to the map's white point,
    a legend naming the composite's elements in their colours, a scale bar of a round length
    for the given pixel size, the values under the cursor, a crosshair on the chosen pixel,
    contrast that follows the slider, and a 300 dpi figure; screenshots are kept."""
    import base64
    import io

    from PIL import Image
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    url, _proc = server
    ds = DataStack(stack)
    elements = ds.attrs("maxrf_elementmaps")["elements"]
    maps = ds.read("maxrf_elementmaps")
    driver = browser()
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.execute_script("return window.viewer && viewer.ready"))
        drawn = driver.execute_script("return viewer.drawn")
        legend = [name for name, _color in drawn["legend"]]
        assert legend and set(legend) <= set(elements)
        colors = {c for _n, c in drawn["legend"]}
        assert "#ffff00" not in colors and len(colors) == len(legend)  # no red+green yellow
        # the legend hides no paint: it sits right of the image
        box = drawn["legendBox"]
        right = driver.execute_script(f"return viewer.pixelToCanvas(0, {maps.shape[2] - 1})[0]"
                                      " + (viewer.pixelToCanvas(0, 1)[0] - "
                                      "viewer.pixelToCanvas(0, 0)[0]) / 2")
        assert box[0] >= right - 0.5
        # the scale bar: a round length, drawn at that many mm / (0.5 mm per pixel) pixels
        bar = drawn["scalebar"]
        scale = driver.execute_script("return viewer.pixelToCanvas(0, 1)[0] - "
                                      "viewer.pixelToCanvas(0, 0)[0]")
        assert abs(bar["px"] - bar["mm"] / 0.5 * scale) < 0.5
        assert bar["label"].endswith("mm") or bar["label"].endswith("µm")
        # the mean spectrum is there at load, with y ticks
        wait.until(lambda d: d.execute_script("return viewer.spectrum !== null"))
        assert "whole scan" in driver.find_element(By.ID, "what").text
        assert driver.execute_script("return viewer.yticks.length") >= 2
        driver.save_screenshot(str(out / "viewer-composite.png"))
        # one map: the colour bar in counts, its white point the map's 99.5th percentile
        el = elements[0]
        loads = driver.execute_script("return viewer.imageLoads")
        Select(driver.find_element(By.ID, "mode")).select_by_value(f"map:{el}")
        wait.until(lambda d: d.execute_script(f"return viewer.imageLoads > {loads}"))
        cb = driver.execute_script("return viewer.drawn.colorbar")
        m = maps[elements.index(el)]
        assert cb["units"] == "counts per pixel" and cb["lo"] == 0
        assert abs(cb["hi"] - np.percentile(m, 99.5)) <= 0.02 * m.max() + 1e-6
        # hover: the map's value under the cursor
        canvas = driver.find_element(By.ID, "image")
        row, col = 11, 30
        x, y = driver.execute_script(f"return viewer.pixelToCanvas({row}, {col})")
        w, h = canvas.size["width"], canvas.size["height"]
        ActionChains(driver).move_to_element_with_offset(canvas, int(x - w / 2),
                                                         int(y - h / 2)).perform()
        wait.until(lambda d: d.execute_script("return viewer.hover !== null"))
        hover = driver.execute_script("return viewer.hover")
        assert [hover["row"], hover["col"]] == [row, col]
        assert abs(hover["values"][el] - float(m[row, col])) <= 1e-3 * max(1.0, abs(m[row, col]))
        assert f"row {row}, col {col}: {el}" in driver.find_element(By.ID, "hover").text
        # a click puts a crosshair there (white over black pixels around it)
        ActionChains(driver).click().perform()
        wait.until(lambda d: d.execute_script(
            "return viewer.spectrum && viewer.spectrum.row !== undefined"))
        shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
        dpr = driver.execute_script("return window.devicePixelRatio")
        left, top = canvas.location["x"], canvas.location["y"]
        g = max(4, scale)
        arm = shot.getpixel((int((left + x + g + 6) * dpr), int((top + y) * dpr)))
        assert min(arm) > 150 and max(arm) - min(arm) < 30, arm  # the crosshair: white (AA)
        # contrast follows the white-point slider at once
        before = driver.execute_script("return viewer.drawn.colorbar.hi")
        driver.execute_script("const s = document.getElementById('hi'); s.value = s.max / 2;"
                              "s.dispatchEvent(new Event('input'));")
        after = driver.execute_script("return viewer.drawn.colorbar.hi")
        assert after != before
        driver.save_screenshot(str(out / "viewer-map.png"))
        # hotmax spots can be hidden
        driver.find_element(By.ID, "spots").click()
        # the exported figure: 300 dpi, colour bar included, at least 1800 px wide
        data = driver.execute_script("return viewer.exportFigure()")
        fig = Image.open(io.BytesIO(base64.b64decode(data.split(",")[1])))
        assert round(fig.info["dpi"][0]) == 300 and fig.size[0] >= 1800
        fig.save(out / "viewer-figure.png", dpi=(300, 300))
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()


def test_element_parts_and_peak_candidates(client, stack):
    """Each element's part of a pixel's fit (they add up to the fit's element lines), and what
    a clicked peak may be; a refit is refused without the page's header."""
    spec = client.get("/api/spectrum?row=5&col=9").json()
    parts = spec["parts"]
    assert parts and set(parts) <= set(spec["fit_counts"])
    for el, part in parts.items():
        values = np.asarray(part["values"])
        assert values.min() >= 0 and abs(values.sum() - spec["fit_counts"][el]) \
            <= 0.01 * spec["fit_counts"][el] + 0.5
    total = np.zeros(len(spec["fit"]))
    for part in parts.values():
        total[part["start"]: part["start"] + len(part["values"])] += part["values"]
    assert np.all(total <= np.asarray(spec["fit"]) + 1e-3)  # the rest is scatter, continuum
    mean = client.get("/api/mean_spectrum?r0=0&r1=4&c0=0&c1=4").json()
    assert mean["parts"]
    near = client.get("/api/lines_near?kev=8.04").json()
    assert near["candidates"][0]["line"].startswith("Cu K")
    assert 0.1 < near["width_kev"] < 0.25
    import io

    ds = DataStack(stack)
    assert set(client.get("/api/info").json()["quality"]) == {"residual", "background"}
    for what, layer in (("residual", "maxrf_elementmaps_residual"),
                        ("background", "maxrf_elementmaps_background")):
        got = np.load(io.BytesIO(client.get(f"/api/quality.npy?what={what}").content))
        np.testing.assert_array_equal(got, ds.read(layer))
    el = ds.attrs("maxrf_elementmaps")["elements"][0]
    got = np.load(io.BytesIO(client.get(f"/api/quality.npy?what=sigma:{el}").content))
    np.testing.assert_array_equal(got, ds.read("maxrf_elementmaps_sigma")[0])
    assert client.get("/api/quality.npy?what=nope").status_code == 400
    r = client.post("/api/refit?add=Zn")
    assert r.status_code == 403 and "viewer page" in r.json()["error"]
    assert client.get("/api/refit").json()["state"] == "idle"


def test_browser_click_a_peak_add_the_element_and_refit(tmp_path, stack):
    """Copper left out of the maps: a click on its Kα peak names it, its button refits the maps
    through the pipeline, and the page then offers a Cu map."""
    from selenium.webdriver.support.ui import WebDriverWait

    path = tmp_path / "v.datastack"
    shutil.copy(stack, path)
    r = subprocess.run([sys.executable, "-m", "maxrf.cli", "maps", str(path), "--refit",
                        "--drop-elements", "Cu"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "Cu " not in r.stdout, r.stdout + r.stderr
    with viewer_page(path) as driver:
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.execute_script("return window.viewer && viewer.ready && "
                                              "viewer.spectrum !== null"))
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By

        spectrum = driver.find_element(By.ID, "spectrum")
        x = driver.execute_script("return viewer.energyToCanvas(8.04)")
        ActionChains(driver).move_to_element_with_offset(
            spectrum, int(x - spectrum.size["width"] / 2), 0).click().perform()
        wait.until(lambda d: d.execute_script("return viewer.identified !== undefined"))
        button = driver.find_element(By.CSS_SELECTOR, "#identify button[data-element='Cu']")
        assert "add Cu and refit" in button.text
        button.click()
        wait.until(lambda d: d.execute_script("return (viewer.reloads || 0) >= 1"))
        assert driver.execute_script("return viewer.refit.state") == "done"
        options = driver.execute_script(
            "return [...document.getElementById('mode').options].map(o => o.value)")
        assert "map:Cu" in options
        driver.save_screenshot(str(ROOT / "test-artifacts" / "viewer-refit.png"))
    ds = DataStack(path)
    assert "Cu" in ds.attrs("maxrf_elementmaps")["elements"]
    assert ds.attrs("maxrf_elementmaps")["maxrf"]["params"]["add_elements"] == ["Cu"]


def test_browser_scatter_selection_masks_the_image(server, stack):
    """Tick "scatter", drag a box over the element-vs-element plot: the pixels inside it are
    counted as numpy counts them and the others are dimmed in the image."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _proc = server
    ds = DataStack(stack)
    elements = ds.attrs("maxrf_elementmaps")["elements"]
    maps = ds.read("maxrf_elementmaps")
    driver = browser()
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.execute_script("return window.viewer && viewer.ready"))
        driver.find_element(By.ID, "scatter").click()
        pair = driver.execute_script("return [document.getElementById('sx').value, "
                                     "document.getElementById('sy').value]")
        assert pair[0] != pair[1] and set(pair) <= set(elements)
        spectrum = driver.find_element(By.ID, "spectrum")
        w, h = spectrum.size["width"], spectrum.size["height"]
        time.sleep(1.0)  # the two maps load
        (ActionChains(driver).move_to_element_with_offset(spectrum, int(-w * 0.3), int(h * 0.3))
         .click_and_hold().move_by_offset(int(w * 0.5), int(-h * 0.5)).release().perform())
        wait.until(lambda d: d.execute_script("return viewer.selection != null"))
        sel = driver.execute_script("return viewer.selection")
        x0, x1, y0, y1 = sel["box"]
        a, b = maps[elements.index(pair[0])], maps[elements.index(pair[1])]
        want = int(((a >= x0) & (a <= x1) & (b >= y0) & (b <= y1)).sum())
        assert sel["pixels"] == want and 0 < want < a.size
        assert "others dimmed" in driver.find_element(By.ID, "what").text
        driver.save_screenshot(str(ROOT / "test-artifacts" / "viewer-scatter.png"))
        driver.find_element(By.ID, "scatter").click()  # unticked: the mask is gone
        assert driver.execute_script("return viewer.selection") is None
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()


def test_band_layers_of_version_3_still_read_any_band_exactly(tmp_path):
    """A datastack made before bands v4 holds the counts by groups of 16 beside its planes:
    any band is read exactly from them (and planes of v4 beside them are not mixed up)."""
    rng = np.random.default_rng(5)
    raw = rng.poisson(0.8, (20, 24, 80)).astype(np.uint16)
    g = 16
    sums = raw.reshape(20, 24, -1, g).sum(-1, dtype=np.uint32)
    cum = np.concatenate([np.zeros((1, 20, 24), np.uint32),
                          np.cumsum(sums, axis=-1, dtype=np.uint32).transpose(2, 0, 1)])
    counts = np.ascontiguousarray(raw.reshape(20, 24, -1, g).transpose(2, 0, 1, 3))
    padded = np.zeros((32, 32, 80), np.uint32)
    padded[:20, :24] = raw
    blocks = padded.reshape(2, 16, 2, 16, 80).sum((1, 3))
    ds = DataStack(tmp_path / "v3.datastack")
    old = {"group_channels": g, "maxrf": {"code_version": "3"}}
    ds.append(raw, "maxrf_raw", chunks=(16, 16, 80))
    ds.append(cum, "maxrf_bandcumsum", attrs=old)
    ds.append(counts, "maxrf_bandcounts", attrs=old)
    ds.append(blocks.astype(np.uint32), "maxrf_blocksums", attrs=old)
    br = BandReader(tmp_path / "v3.datastack")
    assert br.counts is not None and br.group == 16
    for lo, hi in [(3, 29), (0, 80), (17, 18), (40, 79)]:
        assert br.channels_of(lo, hi) == (lo, hi)
        np.testing.assert_array_equal(br.band(lo, hi), raw[..., lo:hi].sum(-1))
    np.testing.assert_array_equal(br.rect_sum(2, 19, 1, 23), raw[2:19, 1:23].sum((0, 1)))


def test_band_edges_when_the_channels_are_no_multiple_of_8(tmp_path):
    """203 channels: the axis' end is an edge too, so the total and the last band are whole."""
    from maxrf.pipeline.bands import band_layers

    raw = np.random.default_rng(1).poisson(1.0, (20, 24, 203)).astype(np.uint16)
    DataStack(tmp_path / "x.datastack").append(raw, "maxrf_raw", chunks=(16, 16, 203))
    band_layers(tmp_path / "x.datastack", progress=False)
    br = BandReader(tmp_path / "x.datastack", exact_bytes=0)  # as a big scan's
    for (lo, hi), want in [((0, 203), (0, 203)), ((190, 203), (192, 203)),
                           ((201, 203), (200, 203)), ((5, 100), (8, 104))]:
        assert br.channels_of(lo, hi) == want
        np.testing.assert_array_equal(br.band(lo, hi), raw[..., want[0]:want[1]].sum(-1))
