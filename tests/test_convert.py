"""Conversion against scipy on every orientation, dtype and record-by; memory; interruption."""

from __future__ import annotations

import itertools
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import write_scan
from scipy.ndimage import gaussian_filter1d

from maxrf.datastack import DataStack, check
from maxrf.demo import DemoSpec, generate_scan
from maxrf.errors import MaxrfError
from maxrf.pipeline.convert import LAYERS, convert


def reference(data: np.ndarray, sigma: float, flip_h: bool, flip_v: bool):
    x = data[::-1] if flip_v else data
    x = x[:, ::-1] if flip_h else x
    cube = gaussian_filter1d(x.astype(np.float32), sigma, axis=-1, mode="reflect", truncate=4.0)
    flat = cube.reshape(-1, cube.shape[-1]).astype(np.float64)
    return x, cube, flat.max(0), flat.mean(0), flat.argmax(0)


@pytest.fixture(scope="module")
def scan_data():
    rng = np.random.default_rng(5)
    data = rng.poisson(
        rng.gamma(0.3, 2.0, (45, 70, 1))  # a different rate per pixel
        * np.exp(-np.linspace(0, 3, 300))
        * 4,
        (45, 70, 300),
    )
    data[7, 61, 150] = 500  # a hot spot
    return data


CASES = list(
    itertools.product([False, True], [False, True], ["<u2", ">u2", "<f4"], ["vector", "image"])
)


@pytest.mark.parametrize("flip_h, flip_v, dtype, record_by", CASES)
def test_matches_scipy(tmp_path, scan_data, flip_h, flip_v, dtype, record_by):
    raw = write_scan(tmp_path / "s", scan_data, dtype, record_by, offset=3)
    out = convert(
        raw,
        tmp_path / "o.datastack",
        sigma=7,
        flip_horizontal=flip_h,
        flip_vertical=flip_v,
        progress=False,
    )
    assert list(out) == list(LAYERS)
    ds = DataStack(tmp_path / "o.datastack")
    x, cube, mx, mean, arg = reference(scan_data.astype(dtype), 7, flip_h, flip_v)
    got = ds.read("maxrf_cube")
    assert got.dtype == np.float32
    assert np.abs(got - cube).max() <= 1e-4 * cube.max()
    # the default precision: every spectrum within 2**-14 of its own peak
    peaks = np.abs(cube).max(axis=-1, keepdims=True)
    assert np.all(np.abs(got - cube) <= 2.0**-14 * peaks * (1 + 1e-5) + 1e-6)
    np.testing.assert_array_equal(ds.read("maxrf_raw"), x)
    assert ds.read("maxrf_raw").dtype == np.dtype(dtype).newbyteorder("=")
    maxspec = ds.read("maxrf_maxspectrum")
    np.testing.assert_array_equal(maxspec, got.reshape(-1, got.shape[2]).max(0))
    np.testing.assert_allclose(maxspec, mx, rtol=1e-5, atol=2.0**-14 * cube.max())
    np.testing.assert_allclose(ds.read("maxrf_sumspectrum"), mean, rtol=1e-5, atol=1e-9)
    raw_mean = x.reshape(-1, x.shape[-1]).astype(np.float64).mean(0)
    np.testing.assert_allclose(ds.read("maxrf_rawmeanspectrum"), raw_mean, rtol=1e-12)
    pix = ds.read("maxrf_maxpixels")
    vals = got[pix[:, 0], pix[:, 1], np.arange(got.shape[2])]
    np.testing.assert_array_equal(vals, got.reshape(-1, got.shape[2]).max(0))
    hot = (45 - 1 - 7 if flip_v else 7, 70 - 1 - 61 if flip_h else 61)
    assert tuple(pix[150]) == hot
    meta = ds.attrs("maxrf_cube")["maxrf"]
    assert meta["step"] == "convert" and meta["params"]["sigma"] == 7.0 and meta["complete"]


@pytest.mark.parametrize(
    "shape, record_by",
    [
        ((8, 8, 16), "vector"),
        ((100, 90, 10), "vector"),
        ((1, 1, 4096), "vector"),
        ((1, 300, 64), "image"),
        ((70, 1, 65), "vector"),
        ((5, 6, 1), "dont-care"),
        ((40, 40, 1), "vector"),
    ],
)
def test_odd_shapes(tmp_path, shape, record_by):
    data = np.random.default_rng(1).poisson(3, shape)
    raw = write_scan(tmp_path / "s", data, "<u2", record_by)
    convert(raw, progress=False)
    ds = DataStack(raw.with_suffix(".datastack"))
    ref = gaussian_filter1d(data.astype(np.float32), 7, axis=-1, mode="reflect", truncate=4.0)
    assert np.abs(ds.read("maxrf_cube") - ref).max() <= 1e-4 * max(ref.max(), 1)
    np.testing.assert_array_equal(ds.read("maxrf_raw"), data)
    assert check(ds.path).ok


def test_sigma_zero_and_precision(tmp_path, scan_data):
    raw = write_scan(tmp_path / "s", scan_data)
    convert(raw, sigma=0, progress=False)
    ds = DataStack(raw.with_suffix(".datastack"))
    np.testing.assert_array_equal(ds.read("maxrf_cube"), scan_data.astype(np.float32))
    assert ds.attrs("maxrf_cube")["maxrf"]["params"]["precision_bits"] is None  # exact
    _, cube, mx, mean, arg = reference(scan_data, 7, False, False)
    peaks = np.abs(cube).max(axis=-1, keepdims=True)
    for n, bits in enumerate([None, 13, 6, 1], start=1):
        convert(raw, precision_bits=bits, progress=False)
        assert ds.latest("maxrf_cube") == "maxrf_cube" + "_" * n  # converting again: versions
        got = ds.read("maxrf_cube")
        if bits is None:  # lossless: scipy to float32 rounding
            assert np.abs(got - cube).max() <= 1e-6 * cube.max()
            np.testing.assert_allclose(ds.read("maxrf_maxspectrum"), mx, rtol=1e-5)
            continue
        err = np.abs(got - cube)
        assert np.all(err <= 2.0 ** -(bits + 1) * peaks * (1 + 1e-5) + 1e-6)
        assert err.max() > 2.0 ** -(bits + 4) * peaks.max()  # it really is rounded
        # every spectrum sits on its grid: multiples of 2**(e - bits), 2**e <= peak < 2**(e+1)
        # (rounding may lift the stored peak to 2**(e+1): test the grid one step finer)
        stored_peak = np.abs(got).max(axis=-1, keepdims=True)
        e = np.floor(np.log2(np.where(stored_peak > 0, stored_peak, 1))) - 1
        steps = got / 2.0 ** (e - bits)
        np.testing.assert_array_equal(steps, np.round(steps))
        assert np.unique(steps).size <= 2 ** (bits + 3)
        assert ds.attrs("maxrf_cube")["maxrf"]["params"]["precision_bits"] == bits
        assert f"2**(e-{bits})" in ds.attrs("maxrf_cube")["precision"]
        pix = ds.read("maxrf_maxpixels")  # statistics of the stored (rounded) cube
        vals = got[pix[:, 0], pix[:, 1], np.arange(got.shape[2])]
        np.testing.assert_array_equal(vals, got.reshape(-1, got.shape[2]).max(0))
        np.testing.assert_allclose(ds.read("maxrf_sumspectrum"), mean, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"sigma": -1}, "sigma"),
        ({"precision_bits": 0}, "precision_bits"),
        ({"precision_bits": 25}, "precision_bits"),
    ],
)
def test_bad_parameters(tmp_path, scan_data, bad, message):
    raw = write_scan(tmp_path / "s", scan_data)
    with pytest.raises(MaxrfError, match=message):
        convert(raw, **bad)
    assert not raw.with_suffix(".datastack").exists()


def test_distributed_local_cluster(tmp_path, scan_data):
    from distributed import Client, LocalCluster

    raw = write_scan(tmp_path / "s", scan_data, ">u2")
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        convert(raw, tmp_path / "d.datastack", scheduler=client, progress=False)
        convert(
            raw,
            tmp_path / "d.datastack",
            scheduler=cluster.scheduler_address,
            flip_horizontal=True,
            progress=False,
        )
    convert(raw, tmp_path / "l.datastack", progress=False)
    dist, local = DataStack(tmp_path / "d.datastack"), DataStack(tmp_path / "l.datastack")
    # BLAS rounding may differ between processes (thread count): equal to float32 precision.
    np.testing.assert_array_equal(dist.read("maxrf_raw", latest=False), local.read("maxrf_raw"))
    for name in ("maxrf_cube", "maxrf_maxspectrum", "maxrf_sumspectrum"):
        np.testing.assert_allclose(
            dist.read(name, latest=False), local.read(name), rtol=2e-6, atol=1e-6
        )
    np.testing.assert_allclose(
        dist.read("maxrf_cube"), local.read("maxrf_cube")[:, ::-1], rtol=2e-6, atol=1e-6
    )
    assert check(tmp_path / "d.datastack").ok


@pytest.fixture(scope="module")
def big_scan(tmp_path_factory):
    """320x320x4096: an 839 MB raw whose float32 cube (1.7 GB) exceeds the memory allowed below."""
    prefix = tmp_path_factory.mktemp("big") / "big"
    generate_scan(prefix, DemoSpec(height=320, width=320, channels=4096, seed=1))
    return prefix.with_suffix(".raw")


def test_memory_bounded_under_rlimit(big_scan, tmp_path):
    limit = int(1.5 * 2**30)
    code = (
        "import sys; from maxrf.pipeline.convert import convert;"
        f"convert(r'{big_scan}', r'{tmp_path}/m.datastack', progress=False)"
    )

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, preexec_fn=cap
    )
    assert res.returncode == 0, res.stderr[-2000:]
    ds = DataStack(tmp_path / "m.datastack")
    assert ds.array("maxrf_cube").shape == (320, 320, 4096)
    assert ds.array("maxrf_cube").nbytes > limit
    spectrum = ds.read("maxrf_cube", compute=False)[100, 200].compute()
    raw = np.fromfile(big_scan, "<u2", count=4096, offset=(100 * 320 + 200) * 4096 * 2)
    ref = gaussian_filter1d(raw.astype(np.float32), 7)
    assert np.abs(spectrum - ref).max() <= 1e-4 * max(ref.max(), 1)


def test_interrupted_conversion_leaves_no_partial_layer(big_scan, tmp_path):
    out = tmp_path / "i.datastack"
    DataStack(out).append(np.arange(5), "earlier")
    size0 = out.stat().st_size
    code = (f"from maxrf.pipeline.convert import convert; "
            f"convert(r'{big_scan}', r'{out}', progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 120
    while out.stat().st_size < size0 + 50 * 2**20 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ds = DataStack(out)
    assert ds.layers == ["earlier"]
    np.testing.assert_array_equal(ds.read("earlier"), np.arange(5))
    assert check(out).ok


@pytest.mark.parametrize("record_by, dtype, flips", [("vector", "<u2", (False, False)),
                                                     ("image", ">u2", (True, True)),
                                                     ("vector", "<u4", (True, False))])
def test_band_layers_in_the_conversion_pass_equal_their_own_pass(tmp_path, record_by, dtype,
                                                                 flips):
    """The band layers written in the conversion's one pass over the counts are the layers the
    band step's own pass over maxrf_raw makes (a width and height not multiples of 16, flips,
    image-ordered and big-endian files, glitch pixels kept as counts)."""
    from maxrf.pipeline.bands import BandReader, band_layers

    rng = np.random.default_rng(5)
    data = rng.poisson(3.0, (37, 21, 200)).astype(np.uint32)
    data[3, 4] = 7  # a glitch pixel: out of the cube, kept in maxrf_raw and the bands
    raw = write_scan(tmp_path / "s", data, dtype=dtype, record_by=record_by)
    kw = dict(flip_horizontal=flips[0], flip_vertical=flips[1], progress=False)
    with pytest.warns(Warning, match="read-out glitch"):
        convert(raw, tmp_path / "fused.datastack", bands={"step": "bands"}, **kw)
    with pytest.warns(Warning, match="read-out glitch"):
        convert(raw, tmp_path / "apart.datastack", **kw)
    band_layers(tmp_path / "apart.datastack", progress=False)
    fused, apart = DataStack(tmp_path / "fused.datastack"), DataStack(tmp_path / "apart.datastack")
    for name in ("maxrf_bandcumsum", "maxrf_blocksums", "maxrf_raw", "maxrf_cube"):
        assert np.array_equal(fused.read(name), apart.read(name)), name
    assert fused.attrs("maxrf_bandcumsum")["maxrf"]["pass"] == "convert"
    assert "maxrf_bandcounts" not in fused  # no second copy of the counts
    flipped = data[::-1] if flips[1] else data
    flipped = flipped[:, ::-1] if flips[0] else flipped
    reader = BandReader(tmp_path / "fused.datastack")
    for lo, hi in ((5, 150), (8, 152), (190, 200), (0, 200), (3, 6)):
        assert np.array_equal(reader.band(lo, hi), flipped[..., lo:hi].sum(-1)), (lo, hi)
    big = BandReader(tmp_path / "fused.datastack", exact_bytes=0)  # the planes alone
    assert np.array_equal(big.band(190, 200), flipped[..., 192:200].sum(-1))  # 200 = the end
    assert np.array_equal(reader.rect_sum(2, 35, 1, 20), flipped[2:35, 1:20].sum((0, 1)))
