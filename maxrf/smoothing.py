"""Gaussian smoothing along the spectral (last) axis, equal to ``scipy.ndimage.gaussian_filter1d``.

MA-XRF spectra are sparse (≈ 80 % of channels hold zero counts), so the convolution is a
*scatter*: each non-zero sample adds its weighted kernel (57 taps at sigma 7) to an accumulator.
A compiled kernel (numba) does it and, while the spectrum is still in cache, rounds it to a
fixed-point grid (optional) and folds it into the per-channel max / argmax and the raw sum: one
pass, no temporaries. Single-threaded, measured here (``benchmarks/convert.py``): 4.7× faster
than ``gaussian_filter1d`` on spectra with 78 % zeros, 2× on dense ones; with rounding and
statistics, ≈ 18 ms per 1024 demo spectra against 44 ms for the block-banded BLAS product and numpy
reductions it replaced. Edges are mirrored as scipy's ``mode="reflect"`` (about the half-sample
edge, repeatedly for spectra shorter than the kernel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numba import njit, uint64

_NATIVE = (np.dtype(np.uint16), np.dtype(np.float32))  # compiled for these; others -> float32


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """The normalised 1-D Gaussian scipy uses (radius ``int(truncate * sigma + 0.5)``)."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


@njit(nogil=True, cache=True, fastmath=True)
def _smooth_rows(data, wpad, radius, span, bits, out, best, where, raw_total):
    """Smooth each row of ``data`` (pixels, channels; finite values only) into ``out``.

    ``wpad[8 + t]`` is tap ``t`` of the kernel (zeros around it). Each non-zero sample updates
    ``span`` accumulator slots starting at a multiple of 8, so consecutive updates hit the same
    aligned vectors. ``bits >= 0`` rounds each smoothed row to multiples of ``2**(e - bits)``
    (``2**e <= max|row| < 2**(e+1)``). Per channel, ``best``/``where`` keep the max and the first
    row reaching it; ``raw_total`` sums ``data``.
    """
    n_pix, n = data.shape
    r = radius
    period = 2 * n
    acc = np.zeros(n + 2 * r + span + 8, dtype=np.float32)
    pos = np.empty(n + 2 * r, dtype=np.int64)  # n channels + at most 2r mirrored positions
    val = np.empty(n + 2 * r, dtype=np.float32)
    su = uint64(span)
    for p in range(n_pix):
        row = data[p]
        m = 0
        for c in range(n):  # branch-free gather of the non-zero samples
            v = np.float32(row[c])
            pos[m] = c
            val[m] = v
            m += v != 0
        for j in range(m):
            raw_total[pos[j]] += val[j]
        lo_end = min(r, n)
        for half in range(2):  # mirrored copies of the channels near either edge (maybe several)
            c0 = 0 if half == 0 else max(lo_end, n - r)
            c1 = lo_end if half == 0 else n
            for c in range(c0, c1):
                v = np.float32(row[c])
                if v == 0:
                    continue
                for base in (c, period - 1 - c):
                    s = base - ((base + r) // period) * period  # first position >= -r
                    while s < n + r:
                        if s < 0 or s >= n:
                            pos[m] = s
                            val[m] = v
                            m += 1
                        s += period
        for j in range(m):
            a = pos[j] + r  # accumulator slot of output pos - r (outputs are offset by 2r)
            a0 = uint64(a & ~7)
            o = uint64(8 - (a & 7))
            v = val[j]
            for t in range(su):
                acc[a0 + t] += v * wpad[o + t]
        smooth = acc[2 * r : 2 * r + n]
        peak = np.float32(0.0)
        for i in range(n):
            peak = max(peak, abs(smooth[i]))
        dst = out[p]
        pp = np.int32(p)
        if bits >= 0 and peak > 0:  # fold, round and clear in one pass
            e = math.frexp(peak)[1] - 1
            step = np.float32(math.ldexp(1.0, e - bits))
            scale = np.float32(math.ldexp(1.0, bits - e))
            for i in range(n):
                _fold(np.rint(smooth[i] * scale) * step, i, pp, dst, best, where)
                smooth[i] = 0.0
        else:
            for i in range(n):
                _fold(smooth[i], i, pp, dst, best, where)
                smooth[i] = 0.0
        acc[: 2 * r] = 0.0
        acc[2 * r + n :] = 0.0


@njit(inline="always")
def _fold(y, i, p, dst, best, where):  # pragma: no cover
    """Store ``y`` as channel ``i`` of row ``p`` and update that channel's max and its row."""
    dst[i] = y
    b = best[i]
    better = y > b
    best[i] = y if better else b
    where[i] = p if better else where[i]


@njit(nogil=True, cache=True)
def _copy_rows(data, out, best, where, raw_total):
    """``sigma == 0``: the spectra themselves, folded into the statistics as above."""
    n_pix, n = data.shape
    for p in range(n_pix):
        row = data[p]
        dst = out[p]
        for i in range(n):
            y = np.float32(row[i])
            dst[i] = y
            raw_total[i] += y
            if y > best[i]:
                best[i] = y
                where[i] = p


@dataclass
class ChannelStats:
    """Per channel: the max over pixels, the pixel id where it first occurs, the sum of the raw
    values. (The sum of the smoothed spectra is the smoothed sum: smoothing is linear.)"""

    best: np.ndarray  # float32
    where: np.ndarray  # int64 pixel ids
    raw_total: np.ndarray  # float64

    def merge(self, other: ChannelStats) -> ChannelStats:
        """Combine two disjoint sets of pixels (ties go to the smaller pixel id)."""
        better = (other.best > self.best) | ((other.best == self.best) & (other.where < self.where))
        return ChannelStats(
            np.where(better, other.best, self.best),
            np.where(better, other.where, self.where),
            self.raw_total + other.raw_total,
        )


def _native(data: np.ndarray) -> np.ndarray:
    """The data as a dtype the kernels are compiled for, non-finite values replaced by 0."""
    if data.dtype.kind == "u" and data.dtype.itemsize == 2:
        return np.ascontiguousarray(data, dtype=np.uint16)
    x = np.ascontiguousarray(data, dtype=np.float32)
    if data.dtype.kind == "f" and not np.all(np.isfinite(x)):
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    return x


@lru_cache(maxsize=8)
def _padded_kernel(sigma: float, truncate: float) -> tuple[np.ndarray, int, int]:
    """The kernel as ``_smooth_rows`` reads it (taps at ``wpad[8:]``, zeros around), its radius
    and the accumulator span one sample updates (taps plus misalignment, in whole vectors)."""
    w = gaussian_kernel(sigma, truncate).astype(np.float32)
    span = (w.size + 7 + 7) // 8 * 8
    wpad = np.zeros(8 + span + 8, dtype=np.float32)
    wpad[8 : 8 + w.size] = w
    wpad.flags.writeable = False
    return wpad, (w.size - 1) // 2, span


def smooth_reduce(
    data: np.ndarray,
    sigma: float,
    bits: int | None = None,
    ids: np.ndarray | None = None,
    truncate: float = 4.0,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, ChannelStats]:
    """Smooth ``data`` (pixels, channels) to float32 and compute its per-channel statistics.

    ``bits`` (None = exact) stores each smoothed spectrum on a grid of ``2**(e - bits)``, ``2**e``
    being the power of two at or below its largest absolute value: error ≤ 2**-(bits+1) × that
    value. ``ids`` (default: row numbers; increasing) name the pixels in ``stats.where``.
    Non-finite samples count as 0. ``out`` (optional) receives the result.
    """
    if data.ndim != 2:
        raise ValueError(f"expected (pixels, channels), got shape {data.shape}")
    if sigma < 0 or not np.isfinite(sigma):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma}")
    x = _native(data)
    n_pix, n = x.shape
    ids = np.arange(n_pix, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    if ids.shape != (n_pix,) or np.any(np.diff(ids) <= 0):
        raise ValueError("ids must be increasing, one per row (ties go to the first row)")
    best = np.full(n, -np.inf, dtype=np.float32)
    where = np.zeros(n, dtype=np.int32)
    raw_total = np.zeros(n, dtype=np.float64)
    if out is None:
        out = np.empty(x.shape, dtype=np.float32)
    elif out.shape != x.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a contiguous float32 array of shape {x.shape}")
    if x.size and sigma == 0:
        _copy_rows(x, out, best, where, raw_total)
    elif x.size:
        wpad, radius, span = _padded_kernel(float(sigma), float(truncate))
        b = -1 if bits is None else int(bits)
        _smooth_rows(x, wpad, radius, span, b, out, best, where, raw_total)
    if n_pix == 0:
        best[:] = 0
    stats = ChannelStats(best, ids[where] if n_pix else where.astype(np.int64), raw_total)
    return out, stats


def smooth_spectra(data: np.ndarray, sigma: float = 7.0, truncate: float = 4.0) -> np.ndarray:
    """Gaussian-smooth ``data`` (..., channels) along its last axis; returns float32.

    Equals ``gaussian_filter1d(data.astype(float32), sigma, mode="reflect", truncate=truncate)``
    to float32 rounding (relative 1e-6). ``sigma == 0`` returns the data as float32.
    """
    data = np.asarray(data)
    if data.ndim == 0:
        raise ValueError("expected at least one axis of channels")
    flat = data.reshape(-1, data.shape[-1])
    out, _ = smooth_reduce(flat, sigma, None, truncate=truncate)
    return out.reshape(data.shape)
