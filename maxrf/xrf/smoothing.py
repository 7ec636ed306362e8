"""Gaussian smoothing along the spectral (last) axis, equal to ``scipy.ndimage.gaussian_filter1d``.

MA-XRF spectra are sparse (≈ 80 % of channels hold zero counts), so the convolution is a
*scatter*: each non-zero sample adds its weighted kernel (57 taps at sigma 7) to an accumulator.
A compiled kernel (numba) does it and, while the spectrum is still in cache, rounds it to a
fixed-point grid (optional) and folds it into the per-channel max / argmax and the raw sum: one
pass, no temporaries (its speed against ``gaussian_filter1d``: docs/performance.md, measured by
``benchmarks/convert.py``). Edges are mirrored as
scipy's ``mode="reflect"`` (about the half-sample edge, repeatedly for spectra shorter than the
kernel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numba import njit, uint64


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """The normalised 1-D Gaussian scipy uses (radius ``int(truncate * sigma + 0.5)``)."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


@njit(inline="always")
def _key(bits):  # pragma: no cover
    """float32 bits -> int32 in the floats' order (-0.0 and +0.0 equal): int max = float max."""
    k = np.int32(bits ^ ((bits >> np.int32(31)) & np.int32(0x7FFFFFFF)))
    return np.int32(k + np.int32(k == np.int32(-1)))


def _unkey(keys: np.ndarray) -> np.ndarray:
    """Inverse of ``_key`` (for an int32 array)."""
    return np.where(keys < 0, keys ^ np.int32(0x7FFFFFFF), keys).astype(np.int32).view(np.float32)


_NEG_INF_KEY = np.int32(np.array(-np.inf, np.float32).view(np.int32) ^ np.int32(0x7FFFFFFF))


@njit(inline="always")
def _fold(bits, p, best, where, zero):  # pragma: no cover
    """One channel of row ``p`` (its float32 ``bits``) folded into its ``best`` (``_key`` of the
    max) and ``where`` (the first row reaching it); returns both. Integer max only: conditional
    stores compile to slow masked vector stores. Scalars only, so the loops stay vectorised."""
    y = _key(bits)
    return max(y, best), max(where, p if y > best else zero)  # rows increase: latest better one


@njit(inline="always", fastmath=True)
def _scatter(acc, taps, a, v, span):  # pragma: no cover
    """Add ``v`` x the kernel with its first tap on accumulator slot ``a`` (``a = c + r`` for a
    sample at channel ``c``: outputs are offset by 2r). Updates ``span`` slots from the multiple of
    8 at or below ``a``, with the taps copy pre-shifted by ``a % 8``."""
    a0 = uint64(a & ~7)
    o = uint64((a & 7) * span)
    for t in range(uint64(span)):
        acc[a0 + t] += v * taps[o + t]


@njit(nogil=True, cache=True, fastmath=True)
def _smooth_rows(data, taps, radius, span, bits, out, best, where, raw_total):
    """Smooth each row of ``data`` (pixels, channels; finite values only) into ``out``.

    ``taps[k * span:(k + 1) * span]`` is the kernel shifted by ``k`` slots within an aligned
    8-vector (``_shifted_kernel``): each non-zero sample updates ``span`` accumulator slots
    starting at a multiple of 8, so consecutive updates hit the same aligned vectors. ``bits >= 0``
    rounds each smoothed row to multiples of ``2**(e - bits)`` (``2**e <= max|row| < 2**(e+1)``).
    Per channel, ``best`` and ``where`` are updated by ``_fold``; ``raw_total`` sums ``data``.
    """
    n_pix, n = data.shape
    r = radius
    period = 2 * n
    acc = np.zeros(n + 2 * r + span + 8, dtype=np.float32)
    pos = np.empty(n, dtype=np.int32)
    magnitude = np.int32(0x7FFFFFFF)
    zero = np.int32(0)
    for p in range(n_pix):
        row = data[p]
        m = 0
        for c in range(n):  # branch-free gather of the non-zero channels (one store each)
            pos[m] = c
            m += row[c] != 0
        for j in range(m):
            c = pos[j]
            v = np.float32(row[c])
            raw_total[c] += v
            _scatter(acc, taps, c + r, v, span)
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
                            _scatter(acc, taps, s + r, v, span)
                        s += period
        smooth = acc[2 * r : 2 * r + n]
        step = np.float32(1.0)
        scale = np.float32(1.0)
        wide = False  # grid outside float32's normal range (tiny spectra): round in float64
        if bits >= 0:
            sbits = smooth.view(np.int32)
            peak = zero
            for i in range(n):  # max |value| on the integer bits: vectorises, a float max does not
                peak = max(peak, np.int32(sbits[i] & magnitude))
            if peak > 0:
                e = (peak >> 23) - 127
                if e == -127:  # subnormal peak
                    e = math.frexp(np.abs(smooth).max())[1] - 1
                wide = abs(e - bits) > 120
                step = np.float32(math.ldexp(1.0, e - bits))
                scale = np.float32(math.ldexp(1.0, bits - e))
        dst = out[p]
        if wide:
            scale64, step64 = math.ldexp(1.0, bits - e), math.ldexp(1.0, e - bits)
            for i in range(n):
                smooth[i] = np.float32(np.rint(np.float64(smooth[i]) * scale64) * step64)
        rnd = bits >= 0 and not wide
        dbits = dst.view(np.int32)
        pp = np.int32(p)
        for i in range(n):  # store, fold into the statistics and clear, in one pass
            dst[i] = np.rint(smooth[i] * scale) * step if rnd else smooth[i]
            best[i], where[i] = _fold(dbits[i], pp, best[i], where[i], zero)
            smooth[i] = 0.0
        acc[: 2 * r] = 0.0
        acc[2 * r + n :] = 0.0


@njit(nogil=True, cache=True)
def _copy_rows(data, out, best, where, raw_total):
    """``sigma == 0``: the spectra themselves, folded into the statistics as above."""
    n_pix, n = data.shape
    zero = np.int32(0)
    for p in range(n_pix):
        row = data[p]
        dst = out[p]
        dbits = dst.view(np.int32)
        pp = np.int32(p)
        for i in range(n):
            y = np.float32(row[i])
            dst[i] = y
            raw_total[i] += y
        for i in range(n):
            best[i], where[i] = _fold(dbits[i], pp, best[i], where[i], zero)


@dataclass
class ChannelStats:
    """Per channel: the max over pixels, the pixel id where it first occurs, the sum of the raw
    values. (The sum of the smoothed spectra is the smoothed sum: smoothing is linear.)"""

    best: np.ndarray  # float32
    where: np.ndarray  # int64 pixel ids
    raw_total: np.ndarray  # float64
    nonfinite: int = 0  # NaN/inf values seen (float data; smoothed as 0)
    negative: int = 0  # negative values seen (signed or float data)
    bad: tuple[int, ...] = ()  # ids of glitch pixels (excluded: smoothed as zeros)

    def merge(self, other: ChannelStats) -> ChannelStats:
        """Combine two disjoint sets of pixels (ties go to the smaller pixel id)."""
        better = (other.best > self.best) | ((other.best == self.best) & (other.where < self.where))
        return ChannelStats(
            np.where(better, other.best, self.best),
            np.where(better, other.where, self.where),
            self.raw_total + other.raw_total,
            self.nonfinite + other.nonfinite,
            self.negative + other.negative,
            tuple(sorted(self.bad + other.bad)),
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
def _shifted_kernel(sigma: float, truncate: float) -> tuple[np.ndarray, int, int]:
    """The kernel as ``_smooth_rows`` reads it: 8 copies of ``span`` slots (taps plus
    misalignment, in whole vectors), copy ``k`` with the taps starting at slot ``k``; its radius;
    ``span``."""
    w = gaussian_kernel(sigma, truncate).astype(np.float32)
    span = (w.size + 7 + 7) // 8 * 8
    taps = np.zeros((8, span), dtype=np.float32)
    for k in range(8):
        taps[k, k : k + w.size] = w
    taps = taps.reshape(-1)
    taps.flags.writeable = False
    return taps, (w.size - 1) // 2, span


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
    best = np.full(n, _NEG_INF_KEY, dtype=np.int32)
    where = np.zeros(n, dtype=np.int32)
    raw_total = np.zeros(n, dtype=np.float64)
    if out is None:
        out = np.empty(x.shape, dtype=np.float32)
    elif out.shape != x.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a contiguous float32 array of shape {x.shape}")
    if x.size and sigma == 0:
        _copy_rows(x, out, best, where, raw_total)
    elif x.size:
        taps, radius, span = _shifted_kernel(float(sigma), float(truncate))
        b = -1 if bits is None else int(bits)
        _smooth_rows(x, taps, radius, span, b, out, best, where, raw_total)
    best = _unkey(best) if n_pix else np.zeros(n, dtype=np.float32)
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
