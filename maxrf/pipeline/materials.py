"""Materials maps: which pixels share a paint (a mixture of pigments), from the element maps.

Each pixel's element counts are variance-stabilised (square root, as for Poisson counts) and
each element weighted by how much of its map's variation is signal rather than fit noise (its
uncertainty layer), so an element that is mostly noise cannot split a paint in two. A Gaussian
mixture is fitted on a sample of pixels for k = 1, 2, ... and k is where one more material stops
lowering the BIC much (its elbow; or the k given); then every pixel is assigned in strips, and
each material's mean raw spectrum is summed block by block: memory stays bounded whatever the
scan size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from maxrf.datastack import DataStack
from maxrf.datastack.blockread import BlockReader
from maxrf.errors import MaxrfError
from maxrf.pipeline.blocks import pixel_blocks, spectra_ahead

MAX_MATERIALS = 12
SAMPLE = 30_000  # pixels the clustering is fitted on
SELECT_SAMPLE = 10_000  # ... and the number of materials chosen on
ROWS = 64  # rows per strip when assigning
ELBOW = 0.05  # k: more materials only while one more lowers the BIC by this share of what all
# the ones before lowered it (a paint laid thicker and thinner, or the mixed pixels along a
# boundary, still lower it a little: a plain BIC minimum splits paints)
PATIENCE = 2  # k values tried past the last one that counted
RESTARTS = 3  # fits of the chosen k from different starts


class MaterialsError(MaxrfError):
    """Materials cannot be mapped from these element maps."""


def features(maps: np.ndarray, sigma: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(centre, scale)`` per element so that ``(sqrt(counts) - centre) * scale`` weighs each
    element by its map's share of signal (variance beyond its fit noise) over its spread."""
    root = np.sqrt(np.clip(maps, 0, None)).reshape(maps.shape[0], -1)
    total = root.var(axis=1)
    if sigma is not None:  # noise of sqrt(x) is sigma / (2 sqrt(x)), floored at one count
        s = sigma.reshape(sigma.shape[0], -1)
        noise = np.mean((s / (2.0 * np.sqrt(np.maximum(maps.reshape(maps.shape[0], -1), 1.0))))
                        ** 2, axis=1)
    else:
        noise = np.full(maps.shape[0], 0.25)  # Poisson counts: var(sqrt) = 1/4
    reliability = np.clip(1.0 - noise / np.maximum(total, 1e-12), 0.0, 1.0)
    scale = np.sqrt(reliability) / np.sqrt(np.maximum(total, 1e-12))
    return root.mean(axis=1), scale


def _transform(block: np.ndarray, centre: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(n_elements, ...) counts → (pixels, n_elements) features."""
    x = np.sqrt(np.clip(block, 0, None)).reshape(block.shape[0], -1).T
    return ((x - centre) * scale).astype(np.float32)


def _kmeans(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.cluster.vq import kmeans2

    best = None
    for attempt in range(3):  # k-means++ starts; the tightest of three
        centres, labels = kmeans2(x, k, minit="++", seed=seed + attempt, iter=30)
        inertia = float(((x - centres[labels]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, centres, labels)
    return best[1], best[2]


@dataclass
class Mixture:
    """A Gaussian mixture over the features: a paint laid on thicker or thinner stretches its
    cluster along a direction, which a full covariance follows and k-means cuts in two."""

    weights: np.ndarray  # (k,)
    means: np.ndarray  # (k, d)
    chol: np.ndarray  # (k, d, d) Cholesky factors of the covariances

    def bic(self, x: np.ndarray) -> float:
        """Bayesian information criterion on ``x`` (lower: a better account of the data for the
        number of parameters)."""
        logp = self.log_density(x.astype(np.float64))
        top = logp.max(axis=1, keepdims=True)
        ll = float((top[:, 0] + np.log(np.exp(logp - top).sum(axis=1))).sum())
        k, d = self.means.shape
        return -2.0 * ll + ((k - 1) + k * d + k * d * (d + 1) / 2) * np.log(len(x))

    def log_density(self, x: np.ndarray) -> np.ndarray:
        """(n, k) log of each component's weighted density at each row of ``x``."""
        from scipy.linalg import solve_triangular

        n, d = x.shape
        out = np.empty((n, len(self.weights)))
        for j, (w, mu, low) in enumerate(zip(self.weights, self.means, self.chol, strict=True)):
            z = solve_triangular(low, (x - mu).T, lower=True, check_finite=False)
            out[:, j] = (np.log(max(w, 1e-300)) - 0.5 * (z * z).sum(axis=0)
                         - np.log(np.diag(low)).sum() - 0.5 * d * np.log(2 * np.pi))
        return out

    def assign(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(self.log_density(x), axis=1)


def fit_mixture(x: np.ndarray, k: int, seed: int = 0, iters: int = 60,
                reg: float = 1e-3, start: Mixture | None = None) -> Mixture:
    """EM for a full-covariance Gaussian mixture, started from k-means++ or from the mixture
    ``start`` (``reg`` keeps every covariance invertible)."""
    n, d = x.shape
    x = x.astype(np.float64)
    resp = np.zeros((n, k))
    if start is None:
        _centres, labels = _kmeans(x, k, seed)
    else:
        labels = start.assign(x)
    resp[np.arange(n), labels] = 1.0
    previous = -np.inf
    mix = None
    for _ in range(iters):
        nk = resp.sum(axis=0) + 1e-10
        means = (resp.T @ x) / nk[:, None]
        chol = np.empty((k, d, d))
        for j in range(k):
            xc = x - means[j]
            cov = (resp[:, j, None] * xc).T @ xc / nk[j] + reg * np.eye(d)
            chol[j] = np.linalg.cholesky(cov)
        mix = Mixture(nk / n, means, chol)
        logp = mix.log_density(x)
        top = logp.max(axis=1, keepdims=True)
        total = top[:, 0] + np.log(np.exp(logp - top).sum(axis=1))
        resp = np.exp(logp - total[:, None])
        likelihood = float(total.sum())
        if likelihood - previous < 1e-5 * abs(likelihood):
            break
        previous = likelihood
    return mix


def _one_material(x: np.ndarray, reg: float = 1e-3) -> Mixture:
    d = x.shape[1]
    cov = np.cov(x.astype(np.float64).T).reshape(d, d) + reg * np.eye(d)
    return Mixture(np.ones(1), x.mean(axis=0, dtype=np.float64)[None],
                   np.linalg.cholesky(cov)[None])


def choose(x: np.ndarray, k: int | None, seed: int = 0) -> tuple[Mixture, dict]:
    """The mixture of ``k`` materials (None: the elbow of the BIC from 1 to ``MAX_MATERIALS``)
    and what was measured."""
    if k is not None:
        return fit_mixture(x, k, seed), {"k": k, "chosen": "given"}
    full = x
    if len(x) > SELECT_SAMPLE:  # k is chosen on fewer pixels, then fitted on all of them
        x = x[np.random.default_rng(seed).choice(len(x), SELECT_SAMPLE, replace=False)]
    fits = {1: _one_material(x)}
    bic = {1: fits[1].bic(x)}
    best, quiet = 2, 0
    for kk in range(2, min(MAX_MATERIALS, len(x) - 1) + 1):
        fits[kk] = fit_mixture(x, kk, seed)
        bic[kk] = fits[kk].bic(x)
        if bic[kk - 1] - bic[kk] >= ELBOW * (bic[1] - bic[kk - 1]):
            best, quiet = kk, 0  # this material explains much more
        else:  # a fit may miss a paint at one k and find it at the next: look a little further
            quiet += 1
            if quiet >= PATIENCE:
                break
    # the chosen k fitted again from other starts: EM may merge two paints and split a third
    # from one start, not from the others; the best BIC wins, then goes on to every sampled pixel
    model = min([fits[best]] + [fit_mixture(x, best, seed + s) for s in range(1, RESTARTS)],
                key=lambda mix: mix.bic(x))
    if full is not x:
        model = fit_mixture(full, best, start=model)
    return model, {"k": best, "chosen": "bic elbow",
                   "bic": {str(kk): round(v, 1) for kk, v in bic.items()}}


def _assign(x: np.ndarray, model: Mixture) -> np.ndarray:
    return model.assign(x.astype(np.float64))


def map_materials(datastack: str | DataStack, k: int | None = None, seed: int = 0
                  ) -> dict[str, np.ndarray | dict]:
    """Labels (height × width, materials numbered by area, largest first), each material's
    mean raw spectrum and mean element counts, and the clustering's figures."""
    ds = DataStack.of(datastack)
    if "maxrf_elementmaps" not in ds:
        raise MaterialsError("no element maps: run 'maxrf maps' first", ds.path)
    if k is not None and not 1 <= int(k) <= 64:
        raise MaterialsError(f"the number of materials must be 1 to 64, got {k}")
    elements = list(ds.attrs("maxrf_elementmaps")["elements"])
    maps = ds.array("maxrf_elementmaps")
    n, h, w = maps.shape
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(h * w, min(SAMPLE, h * w), replace=False))
    rows, cols = np.divmod(pick, w)
    full = np.asarray(maps[...], dtype=np.float32) if n * h * w <= 64e6 else None
    if full is not None:
        sample = full[:, rows, cols]
        sigma = (np.asarray(ds.array("maxrf_elementmaps_sigma")[...], dtype=np.float32)
                 if "maxrf_elementmaps_sigma" in ds else None)
        centre, scale = features(full, sigma)
    else:  # a very large scan: the statistics from the sample
        sample = np.stack([np.asarray(maps[i])[rows, cols] for i in range(n)])
        sig = (np.stack([np.asarray(ds.array("maxrf_elementmaps_sigma")[i])[rows, cols]
                         for i in range(n)]) if "maxrf_elementmaps_sigma" in ds else None)
        centre, scale = features(sample[:, :, None], None if sig is None else sig[:, :, None])
    used = scale > 0  # elements that are all noise carry no feature
    centre, scale = centre[used], scale[used]
    x = _transform(sample[used], centre, scale) if used.any() else np.zeros((len(pick), 0))
    distinct = len(np.unique(x, axis=0)) if x.shape[1] else 1
    if k == 1 or distinct < 3 or len(pick) < 3:  # one pixel, or nothing to tell apart
        model = Mixture(np.ones(1), np.zeros((1, x.shape[1])), np.eye(x.shape[1])[None])
        info = {"k": 1, "chosen": "given" if k == 1 else "one material: nothing sets pixels apart"}
    else:
        model, info = choose(x, None if k is None else min(int(k), distinct), seed)
    kk = len(model.weights)
    labels = np.empty((h, w), np.int16)
    composition = np.zeros((kk, n), np.float64)  # summed per material in the same pass
    for r0 in range(0, h, ROWS):
        block = full[:, r0 : r0 + ROWS] if full is not None else np.asarray(maps[:, r0 : r0 + ROWS])
        lab = (np.zeros(block.shape[1] * w, np.int64) if kk == 1 else
               _assign(_transform(block[used], centre, scale), model))
        labels[r0 : r0 + ROWS] = lab.reshape(block.shape[1], w)
        for i in range(n):
            composition[:, i] += np.bincount(lab, weights=block[i].ravel(), minlength=kk)
    # number the materials by area, largest first
    area = np.bincount(labels.ravel(), minlength=kk)
    order = np.argsort(-area, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    labels = rank[labels].astype(np.int16)
    pixels = area[order].astype(np.float64)
    composition = composition[order] / np.maximum(pixels, 1)[:, None]
    spectra = _mean_spectra(ds, labels, kk, pixels)
    info.update({"elements": elements, "pixels": pixels.astype(int).tolist(),
                 "main_elements": main_elements(composition, elements, pixels),
                 "features": "sqrt(counts), each element weighted by its signal share; "
                             "a full-covariance Gaussian mixture"})
    return {"labels": labels, "spectra": spectra, "composition": composition.astype(np.float32),
            "info": info}


def _mean_spectra(ds: DataStack, labels: np.ndarray, k: int, pixels: np.ndarray) -> np.ndarray:
    """Each material's mean raw spectrum: ``maxrf_raw`` read 16 rows at a time straight from
    the zip (:class:`BlockReader`: whole chunks decoded in place into reused buffers, the next
    rows meanwhile), each pixel's counts added to its material's sum in one compiled pass
    (exact integer sums; no float copy of the counts)."""
    reader = BlockReader(ds, "maxrf_raw")
    h, w, c = reader.shape
    sums = np.zeros((k, c), np.float64)
    # blocks of 16 × 256 pixels (whole 16-row strips of a real scan were 208 MB each, four in
    # flight: the step's peak memory)
    for (r0, r1, c0, c1), flat, order in spectra_ahead(reader, pixel_blocks(h, w)):
        lab = np.full(flat.shape[0], -1, np.int64)  # rows past the scan's edge: no material
        lab[order] = labels[r0:r1, c0:c1].ravel()
        if flat.dtype.kind in "ui" and flat.dtype.isnative:
            _add_by_label(flat, lab, sums)
        else:  # float or foreign-endian counts
            for m in np.unique(lab[lab >= 0]):
                sums[m] += flat[lab == m].sum(axis=0, dtype=np.float64)
    return (sums / np.maximum(pixels, 1)[:, None]).astype(np.float32)


@njit(cache=True)
def _add_by_label(flat, lab, sums):  # pragma: no cover - compiled
    """``sums[lab[p]] += flat[p]`` for every pixel ``p`` with a label (≥ 0)."""
    for p in range(flat.shape[0]):
        if lab[p] < 0:
            continue
        row = sums[lab[p]]
        for ch in range(flat.shape[1]):
            row[ch] += flat[p, ch]


def main_elements(composition: np.ndarray, elements: list[str], pixels, top: int = 3
                  ) -> list[list[str]]:
    """Each material's telling elements: those it holds most above the scan's average (the
    ground's calcium is in every paint and names none), among those with ≥ 5 counts/pixel."""
    comp = np.asarray(composition, dtype=np.float64)
    weights = np.asarray(pixels, dtype=np.float64)
    mean = (comp * weights[:, None]).sum(axis=0) / max(weights.sum(), 1.0)
    out = []
    for row in comp:
        enrichment = np.where(row >= 5.0, row / np.maximum(mean, 1e-9), 0.0)
        order = [i for i in np.argsort(-enrichment) if enrichment[i] > 0][:top]
        out.append([elements[i] for i in order] or [elements[int(np.argmax(row))]])
    return out


def adjusted_rand_index(a: np.ndarray, b: np.ndarray) -> float:
    """Agreement of two labelings of the same pixels, 1 when equal up to renaming, about 0 by
    chance (Hubert & Arabie 1985)."""
    from math import comb

    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1), np.int64)
    np.add.at(table, (ai, bi), 1)
    pairs = sum(comb(int(n), 2) for n in table.ravel())
    rows = sum(comb(int(n), 2) for n in table.sum(axis=1))
    cols = sum(comb(int(n), 2) for n in table.sum(axis=0))
    expected = rows * cols / max(comb(a.size, 2), 1)
    top = 0.5 * (rows + cols)
    return 1.0 if top == expected else float((pairs - expected) / (top - expected))


def materials_layers(datastack, k: int | None = None, provenance: dict | None = None
                     ) -> dict[str, str]:
    """Map the materials and commit ``maxrf_materials``, ``maxrf_materials_spectra`` and
    ``maxrf_materials_composition`` in one append."""
    import time

    started = time.time()
    ds = DataStack.of(datastack)
    result = map_materials(ds, k)
    info = result["info"]
    meta = {"step": "materials", "params": {"materials": k}, **(provenance or {})}
    meta["duration_s"] = round(time.time() - started, 3)
    with ds.appending() as app:
        app.write("maxrf_materials", result["labels"],
                  attrs={**info, "units": "material number (0: the largest)"})
        app.write("maxrf_materials_spectra", result["spectra"],
                  attrs={"units": "mean raw counts per pixel and channel"})
        app.write("maxrf_materials_composition", result["composition"],
                  attrs={"units": "mean element counts per pixel", "columns": info["elements"]})
        for name in app.writers:
            app.finish(name, {"maxrf": meta})
    return app.committed
