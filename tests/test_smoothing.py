"""The compiled smoothing kernel against scipy, its rounding grid and its per-channel statistics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from maxrf.xrf.smoothing import ChannelStats, smooth_reduce, smooth_spectra


@pytest.mark.parametrize("n", [1, 2, 3, 5, 10, 27, 28, 29, 56, 57, 58, 63, 64, 65, 300, 4096])
@pytest.mark.parametrize("sigma", [0.4, 1, 3, 7, 20])
def test_matches_scipy_for_every_length(n, sigma):
    rng = np.random.default_rng(n)
    x = rng.poisson(rng.uniform(0.1, 4), (9, n)).astype(np.uint16)
    x[0] = 0  # an empty spectrum
    ref = gaussian_filter1d(x.astype(np.float32), sigma, axis=-1, mode="reflect", truncate=4.0)
    got = smooth_spectra(x, sigma)
    assert got.dtype == np.float32 and got.shape == x.shape
    assert np.abs(got - ref).max() <= 1e-6 * max(ref.max(), 1)


@pytest.mark.parametrize("dtype", ["<u2", ">u2", "<i4", "<u1", "<f4", ">f8", "<i2"])
def test_dtypes_and_non_finite_values(dtype):
    rng = np.random.default_rng(3)
    x = rng.poisson(2, (4, 5, 200)).astype(dtype)
    if np.dtype(dtype).kind == "f":
        x[0, 0, 10] = np.nan
        x[1, 2, 50] = np.inf
        x[2, 3, 7] = -2.5  # negative values are smoothed too
    clean = np.nan_to_num(x.astype(np.float64), nan=0, posinf=0, neginf=0).astype(np.float32)
    ref = gaussian_filter1d(clean, 7, axis=-1)
    got = smooth_spectra(x, 7)
    assert np.all(np.isfinite(got))
    assert np.abs(got - ref).max() <= 1e-6 * np.abs(ref).max()
    np.testing.assert_array_equal(smooth_spectra(x, 0), clean)


def test_statistics_first_maximum_and_ids():
    x = np.zeros((6, 100), np.uint16)
    x[[1, 4], 50] = 9  # equal maxima at rows 1 and 4: the first (smaller id) wins
    x[5, 10] = 3
    ids = np.array([10, 20, 30, 40, 50, 60])
    out, stats = smooth_reduce(x, 5, None, ids=ids)
    ref = gaussian_filter1d(x.astype(np.float32), 5, axis=-1)
    np.testing.assert_allclose(out, ref, atol=1e-6)
    np.testing.assert_array_equal(stats.best, out.max(0))
    assert stats.where[50] == 20  # rows 1 (id 20) and 4 (id 50) tie
    assert stats.where[10] == 60
    np.testing.assert_array_equal(stats.raw_total, x.sum(0))


def test_merge_keeps_the_smallest_pixel_on_ties():
    a = ChannelStats(np.array([1, 5, 2], np.float32), np.array([7, 3, 9]), np.ones(3))
    b = ChannelStats(np.array([1, 4, 3], np.float32), np.array([2, 1, 10]), np.ones(3))
    m = a.merge(b)
    np.testing.assert_array_equal(m.best, [1, 5, 3])
    np.testing.assert_array_equal(m.where, [2, 3, 10])
    np.testing.assert_array_equal(m.raw_total, [2, 2, 2])


@pytest.mark.parametrize("bits", [1, 4, 13, 20])
def test_rounding_grid_and_bound(bits):
    rng = np.random.default_rng(bits)
    x = rng.poisson(rng.gamma(0.5, 3, (200, 1)), (200, 512)).astype(np.uint16)
    exact = smooth_spectra(x, 7)
    got, stats = smooth_reduce(x, 7, bits)
    peak = np.abs(exact).max(axis=1, keepdims=True)
    assert np.all(np.abs(got - exact) <= 2.0 ** -(bits + 1) * peak * (1 + 1e-6))
    e = np.floor(np.log2(np.where(peak > 0, peak, 1)))
    on_grid = got / 2.0 ** (e - bits)
    np.testing.assert_array_equal(on_grid, np.round(on_grid))
    np.testing.assert_array_equal(stats.best, got.max(0))  # statistics of the rounded values


@pytest.mark.parametrize("sigma", [0, 3])
def test_statistics_of_signed_values_match_numpy(sigma):
    """Negative, subnormal and signed-zero values: max / first argmax as numpy computes them."""
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, (40, 64)).astype(np.float32)
    x[:, :8] = -rng.random((40, 8)).astype(np.float32)  # all-negative channels
    x[:, 8:12] = np.float32(1e-41) * rng.integers(-3, 4, (40, 4))  # subnormals, signed zeros
    x[5:, 20] = -0.0
    x[:5, 20] = 0.0
    out, stats = smooth_reduce(x, sigma, None)
    np.testing.assert_array_equal(stats.best, out.max(0))
    np.testing.assert_array_equal(stats.where, out.argmax(0))


def test_subnormal_spectrum_is_rounded_on_its_own_grid():
    x = np.zeros((2, 64), np.float32)
    x[0, 30] = 3e-39  # smoothed peak is subnormal
    x[1, 30] = 5.0
    got, _ = smooth_reduce(x, 2, 4)
    exact = smooth_spectra(x, 2)
    peak = np.abs(exact).max(axis=1, keepdims=True)
    assert np.all(np.abs(got - exact) <= 2.0**-5 * peak)
    assert np.count_nonzero(got[0]) > 0


def test_bad_input():
    with pytest.raises(ValueError, match="sigma"):
        smooth_spectra(np.ones((2, 10)), -1)
    with pytest.raises(ValueError, match="pixels, channels"):
        smooth_reduce(np.ones(10), 7)
    with pytest.raises(ValueError, match="ids must be increasing"):
        smooth_reduce(np.ones((3, 10), np.uint16), 7, ids=np.array([3, 2, 1]))
    with pytest.raises(ValueError, match="out must be"):
        smooth_reduce(np.ones((2, 10), np.uint16), 7, out=np.empty((2, 9), np.float32))
