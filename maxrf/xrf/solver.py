"""Non-negative least squares for spectra: one spectrum exactly (scipy), millions batched on the
normal equations (compiled coordinate descent, both cores), and a variable-projection fit of the
model's non-linear parameters (linear amplitudes solved by NNLS inside)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit, prange
from scipy.optimize import least_squares, nnls


def nnls_weighted(templates: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Exact NNLS of one spectrum: minimise Σ w (y − aᵀT)², a ≥ 0 (templates: K × C)."""
    sw = np.sqrt(weights)
    scale = np.sqrt((templates**2 * weights).sum(axis=1))
    scale[scale == 0] = 1.0
    a, _ = nnls((templates * sw / scale[:, None]).T, y * sw, maxiter=50 * templates.shape[0])
    return a / scale


def nnls_gram(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray | None:
    """The same NNLS from the normal equations (``gram`` = T W Tᵀ, ``rhs`` = T W y): solved as
    ‖Lᵀa − L⁻¹rhs‖ with G = L Lᵀ, a K × K problem instead of C × K (C channels ≫ K
    components). None when the Gram matrix is singular (the caller solves the full problem)."""
    from scipy.linalg import solve_triangular

    d = np.sqrt(np.maximum(np.diag(gram), 1e-300))
    g = gram / d[:, None] / d[None, :]
    try:
        low = np.linalg.cholesky(g + 1e-12 * np.eye(len(d)))
    except np.linalg.LinAlgError:
        return None
    a, _ = nnls(low.T, solve_triangular(low, rhs / d, lower=True), maxiter=50 * len(d))
    return a / d


def nnls_small(templates: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """:func:`nnls_weighted` through the K × K normal equations (many times faster for
    C ≫ K channels; the full problem when they are singular)."""
    tw = templates * weights
    a = nnls_gram(tw @ templates.T, tw @ y)
    return a if a is not None else nnls_weighted(templates, y, weights)


def poisson_weights(y: np.ndarray, floor: float = 1.0) -> np.ndarray:
    """1 / variance of Poisson counts ``y``, floored so empty channels do not dominate."""
    return 1.0 / np.maximum(np.asarray(y, dtype=np.float64), floor)


@njit(parallel=True, cache=True, fastmath=False)
def _cd_gram(G, B, X, free, max_sweeps, tol):  # pragma: no cover - compiled
    """Coordinate descent of every row of ``X`` in place; ``free[p, k]`` False holds x at 0."""
    P, K = B.shape
    sweeps_out = np.zeros(P, np.int32)
    for p in prange(P):
        x = X[p]
        for k in range(K):
            if not free[p, k]:
                x[k] = 0.0
        g = np.empty(K)
        for i in range(K):
            s = -B[p, i]
            for j in range(K):
                s += G[i, j] * x[j]
            g[i] = s
        done = 0
        for _sweep in range(max_sweeps):
            done += 1
            maxd = 0.0
            maxx = 0.0
            for k in range(K):
                new = x[k] - g[k] / G[k, k]
                if new < 0.0 or not free[p, k]:
                    new = 0.0
                d = new - x[k]
                if d != 0.0:
                    x[k] = new
                    for j in range(K):  # G is symmetric: walk its row (contiguous)
                        g[j] += G[k, j] * d
                    if abs(d) > maxd:
                        maxd = abs(d)
                if x[k] > maxx:
                    maxx = x[k]
            if maxd <= tol * maxx:
                break
        sweeps_out[p] = done
    return sweeps_out


@njit(parallel=True, cache=True, fastmath=True)
def _spectra_into(raw, lo, hi, w, y, yy, total):  # pragma: no cover - compiled
    for p in prange(raw.shape[0]):
        s = 0.0
        n = 0.0
        for c in range(hi - lo):
            v = np.float32(raw[p, lo + c])
            y[p, c] = v
            s += w[c] * v * v
            n += v
        yy[p] = s
        total[p] = n


def spectra_f32(
    raw: np.ndarray, lo: int, hi: int, w: np.ndarray, out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Channels ``lo:hi`` of spectra (pixels × channels, any integer or float dtype) as float32,
    each one's Σ w·y² (for χ² without a second pass) and its total counts. ``out`` (a float32
    buffer of at least pixels × (hi − lo)) is reused: a fresh array of tens of MB is new mmapped
    pages each time, and their page faults cost more than the conversion."""
    p, c = raw.shape[0], hi - lo
    if out is None or out.size < p * c:
        out = np.empty(p * c, np.float32)
    y = out.reshape(-1)[: p * c].reshape(p, c)
    yy, total = np.empty(p), np.empty(p)
    _spectra_into(raw, lo, hi, w, y, yy, total)
    return y, yy, total


class GramSolver:
    """NNLS of many spectra against fixed templates and weights, on the normal equations:
    ``solve(B)`` takes B = Y·(W·Tᵀ) (pixels × K) and returns the amplitudes (pixels × K)."""

    def __init__(self, templates: np.ndarray, weights: np.ndarray, tol: float = 1e-4,
                 max_sweeps: int = 2000) -> None:
        t = np.asarray(templates, dtype=np.float64)
        w = np.asarray(weights, dtype=np.float64)
        self.gram = (t * w) @ t.T
        d = np.sqrt(np.diag(self.gram))
        d[d == 0] = 1.0
        self.scale = 1.0 / d
        self.gs = self.gram * self.scale[:, None] * self.scale[None, :]
        self.gs[np.diag_indices_from(self.gs)] = np.maximum(np.diag(self.gs), 1e-12)
        self.start = np.linalg.pinv(self.gs)
        self.projector = np.ascontiguousarray((t * w).T.astype(np.float32))  # C × K
        self.tol, self.max_sweeps = tol, max_sweeps
        self.last_sweeps = np.zeros(0, np.int32)

    def project(self, y: np.ndarray) -> np.ndarray:
        """B = Y·(W·Tᵀ) for spectra ``y`` (pixels × C), float32 matmul."""
        return (np.asarray(y, dtype=np.float32) @ self.projector).astype(np.float64)

    def solve(self, b: np.ndarray, free: np.ndarray | None = None) -> np.ndarray:
        """Amplitudes for B; ``free`` (pixels × K bool) holds the False ones at 0."""
        bs = np.ascontiguousarray(b * self.scale)
        x = np.ascontiguousarray(np.maximum(bs @ self.start, 0.0))
        if free is None:
            free = np.ones(x.shape, np.bool_)
        self.last_sweeps = _cd_gram(self.gs, bs, x, np.ascontiguousarray(free, dtype=np.bool_),
                                    self.max_sweeps, self.tol)
        return x * self.scale

    def weighted_chi2(self, yy: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Σ w (y − model)² from Σ w y², B and the amplitudes (no second pass over Y)."""
        return np.maximum(yy - 2 * np.einsum("pk,pk->p", x, b)
                          + np.einsum("pk,pk->p", x @ self.gram, x), 0.0)


def fit_nonlinear(
    y: np.ndarray,
    make_templates: Callable[[np.ndarray], np.ndarray],
    p0: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray],
    weights: np.ndarray,
    x_scale: np.ndarray | None = None,
    max_nfev: int = 60,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Variable projection: least squares over the non-linear parameters ``p`` where, for each
    ``p``, the amplitudes are the NNLS solution for ``make_templates(p)``. Returns the
    parameters, the amplitudes and the weighted χ²."""
    sw = np.sqrt(weights)

    def resid(p):
        t = make_templates(p)
        a = nnls_small(t, y, weights)
        return (y - a @ t) * sw

    res = least_squares(
        resid, p0, bounds=bounds, x_scale=x_scale if x_scale is not None else 1.0,
        diff_step=1e-3, max_nfev=max_nfev, method="trf",
    )
    t = make_templates(res.x)
    a = nnls_weighted(t, y, weights)
    return res.x, a, float(np.sum(((y - a @ t) * sw) ** 2))
