"""Automatic registration of a scan to a photograph of the painting (no control points).

An element map does not look like a photo, so nothing is compared pixel for pixel as it is:

1. **Coarse search.** The scan's images (the leading principal components of its square-rooted
   element maps and total counts; high-passed, whitened) and the photo's colour channels
   (high-passed: lighting is not paint) are correlated over every shift at once (masked normalised
   cross-correlation in the Fourier domain, Padfield 2012: only the overlap counts, so the scan may
   cover a small part of the photo or run past its edge), for each rotation (90° steps ± a few
   degrees) and scale on a log grid. The score is the sum of squared correlations between scan and
   photo channels: a paint may be darker or lighter than its neighbours, either counts.
2. **Refinement**, coarse to fine. At the current estimate, canonical correlation analysis finds
   the mix of the scan's images and the mix of the photo's colours that agree best; the enhanced
   correlation coefficient (OpenCV's ECC) then moves the transform (affine, then the asked model)
   to make those two images agree, on a pyramid ending at the scan's own pixels (or 1024 px), the
   scan's edge band left out. Every candidate of the coarse search is refined on the coarse
   levels; the best (and a close runner-up) on to the end.
3. **A check before anything is kept**: the transform must be that of a photo of a flat painting
   (orientation kept, little stretch or perspective, enough overlap) and the final correlation
   high and well above the one the same images give when misaligned; otherwise the registration
   is refused (one line, with the hint to give control points).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from maxrf.imaging.geometry import RegistrationError, apply, corners, jacobian

COARSE_PX = 160  # the photo's longest side in the coarse search
ANGLES_DEG = (-5.0, 0.0, 5.0)  # around each 90° step
SCALE_STEP = 1.15  # between neighbouring scales of the coarse search
FOOTPRINT = (0.2, 1.6)  # the scan's size in the photo, relative to the photo's (longest sides)
HIGHPASS = 0.08  # blur removed before the coarse search, relative to the scan's longest side
HIGHPASS_FINE = 0.03  # ... and in the refinement (finer: edges place the scan best)
FINEST_PX = 1024  # the finest level of the refinement, longest side
EXACT_BLUR_SIGMA = 6.0  # broader blurs are made on a reduced copy
MARGIN = 1.0  # the scan's edge band left out of the ECC, in high-pass sigmas
MIN_OVERLAP = 0.2  # of the scan's footprint, or of the photo, whichever is smaller
CANDIDATES = 24  # of the coarse search, checked on the coarse levels of the refinement
MAX_STRETCH = 1.3  # of a registration: a photo taken square-on to the painting, within reason
MAX_PERSPECTIVE = 1.5  # the scale at one corner of the scan over that at another, at most
MIN_CORRELATION = 0.6  # the final canonical correlation of an accepted registration
MIN_CONTRAST = 3.0  # ... and its ratio to the correlation when misaligned
MIN_SUPPORT = 0.33  # ... and the geometric mean of its first two canonical correlations: a
# photo truly of the scanned paint differs from it in more than one way (light and hue), while a
# wrong placement tuned to one chance likeness (a few edges of another painting) has one only
HINT = "give control points with --points CSV (scan_col, scan_row, photo_x, photo_y)"


@dataclass(frozen=True)
class AutoResult:
    """A registration found without control points."""

    matrix: np.ndarray  # 3 × 3: scan (col, row) pixel centres → photo (x, y) pixels
    correlation: float  # canonical correlation of scan and photo on the scan's own grid
    null_correlation: float  # the same when the photo is misaligned (what chance gives)
    second_correlation: float | None  # the second canonical correlation (None: one only)
    overlap: float  # share of the scan's pixels inside the photo


def _standardise(stack: np.ndarray) -> np.ndarray:
    """Each image clipped at its 0.5/99.5 percentiles, then zero mean and unit variance."""
    out = np.empty(stack.shape, np.float32)
    for i, a in enumerate(stack):
        v = a[np.isfinite(a)]
        lo, hi = (np.percentile(v, [0.5, 99.5]) if v.size else (0.0, 1.0))
        a = np.clip(np.nan_to_num(a, nan=lo), lo, hi)
        v = np.clip(v, lo, hi)
        out[i] = (a - v.mean()) / max(float(v.std()), 1e-9)
    return out


def _components(stack: np.ndarray, keep: int, floor: float, whiten: bool) -> np.ndarray:
    """The ``keep`` leading principal components of zero-mean images (those whose variance
    exceeds ``floor`` of the largest), each of unit variance when ``whiten``."""
    x = stack.reshape(len(stack), -1)
    vals, vecs = np.linalg.eigh((x @ x.T / x.shape[1]).astype(np.float64))
    order = np.argsort(vals)[::-1][:keep]
    order = order[vals[order] > floor * max(float(vals.max()), 1e-12)]
    comps = vecs[:, order].T.astype(np.float32) @ x
    if whiten:
        comps /= np.sqrt(vals[order]).astype(np.float32)[:, None]
    return comps.reshape(len(order), *stack.shape[1:]).astype(np.float32)


def _whiten(stack: np.ndarray, keep: int) -> np.ndarray:
    """The ``keep`` leading principal components of standardised images, each of unit variance."""
    return _components(stack, keep, 1e-6, whiten=True)


def scan_images(maps: list[np.ndarray], keep: int = 4) -> np.ndarray:
    """The scan's images for the registration: the ``keep`` leading principal components of its
    square-rooted maps (counts' Poisson noise becomes the same small variance in every map, so
    the components are the maps' structure, not the noise of the weak ones); (k, h, w) float32."""
    stack = np.stack([np.sqrt(np.clip(np.nan_to_num(np.asarray(m, np.float32)), 0, None))
                      for m in maps])
    for a in stack:  # hot spots: a few pixels must not make a component of their own
        np.minimum(a, np.percentile(a, 99.9), out=a)
    stack -= stack.mean(axis=(1, 2), keepdims=True)
    comps = _components(stack, keep, 0.02, whiten=False)
    if not len(comps):
        raise RegistrationError(f"the scan's maps are flat: nothing to register; {HINT}")
    return comps


def _resize(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    if img.shape[:2] == shape:
        return img
    h, w = shape
    smaller = h * w < img.shape[0] * img.shape[1]
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if smaller else cv2.INTER_LINEAR)


def _level(shape: tuple[int, int], factor: float) -> tuple[tuple[int, int], np.ndarray]:
    """The shape of an image reduced by ``factor`` and the matrix from its pixel centres to the
    full image's."""
    h, w = shape
    lh, lw = max(1, round(h / factor)), max(1, round(w / factor))
    fy, fx = h / lh, w / lw
    to_full = np.array([[fx, 0, (fx - 1) / 2], [0, fy, (fy - 1) / 2], [0, 0, 1]])
    return (lh, lw), to_full


class _PhotoSpectrum:
    """The photo's channel sums in the Fourier domain, for the masked correlation."""

    def __init__(self, photo: np.ndarray, fft_shape: tuple[int, int]) -> None:
        from scipy import fft

        self.shape = photo.shape[1:]
        self.fft_shape = fft_shape
        one = np.ones(self.shape, np.float32)
        self.one = fft.rfft2(one, fft_shape, workers=-1)
        self.p = fft.rfft2(photo, fft_shape, workers=-1)
        self.p2 = fft.rfft2(photo * photo, fft_shape, workers=-1)

    def correlate(self, templ: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(score, overlap count) for every placement of the template's top-left corner at
        photo (row, col) = (index − template size + 1)."""
        from scipy import fft

        fs = self.fft_shape
        k = len(templ)
        flip_m = mask[::-1, ::-1].astype(np.float32)
        flip_t = (templ * mask)[:, ::-1, ::-1]
        fwd = fft.rfft2(np.concatenate([flip_m[None], flip_t, flip_t * flip_t]), fs, workers=-1)
        fm, ft, ft2 = fwd[0], fwd[1 : k + 1], fwd[k + 1 :]
        c = len(self.p)
        prods = np.concatenate([fm[None] * self.one[None], fm[None] * self.p, fm[None] * self.p2,
                                ft * self.one[None], ft2 * self.one[None],
                                (ft[:, None] * self.p[None]).reshape(k * c, *fm.shape)])
        out = fft.irfft2(prods, fs, workers=-1)
        n = np.maximum(np.rint(out[0]), 1)
        sp, sp2 = out[1 : 1 + c], out[1 + c : 1 + 2 * c]
        st, st2 = out[1 + 2 * c : 1 + 2 * c + k], out[1 + 2 * c + k : 1 + 2 * c + 2 * k]
        x = out[1 + 2 * c + 2 * k :].reshape(k, c, *fs)
        vp = np.maximum(sp2 - sp * sp / n, 1e-6 * n)
        vt = np.maximum(st2 - st * st / n, 1e-6 * n)
        cov = x - st[:, None] * sp[None] / n
        score = np.sum(cov * cov / (vt[:, None] * vp[None]), axis=(0, 1))
        return score, n


def _highpass(stack: np.ndarray, sigma: float) -> np.ndarray:
    """Each image minus its Gaussian blur of ``sigma`` pixels (edges and texture kept)."""
    import cv2

    stack = np.asarray(stack, np.float32)
    if sigma <= EXACT_BLUR_SIGMA:
        return np.stack([a - cv2.GaussianBlur(a, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
                         for a in stack])
    # a broad blur is as good from a reduced copy: blurred there, brought back (much faster)
    h, w = stack.shape[1:]
    k = sigma / 3
    small = (max(1, round(h / k)), max(1, round(w / k)))
    out = np.empty_like(stack)
    for i, a in enumerate(stack):
        low = cv2.GaussianBlur(_resize(a, small), (0, 0), sigma / k,
                               borderType=cv2.BORDER_REFLECT)
        out[i] = a - cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)
    return out


def _similarity(scale: float, angle_deg: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), 0.0],
                     [scale * np.sin(a), scale * np.cos(a), 0.0], [0, 0, 1.0]])


def coarse_search(images: np.ndarray, photo: np.ndarray, top: int = 3
                  ) -> list[tuple[float, np.ndarray]]:
    """The ``top`` best (score, scan → photo matrix) of the exhaustive coarse search, in full
    resolution pixels."""
    import cv2

    k, h, w = images.shape
    ph, pw = photo.shape[:2]
    pshape, p_to_full = _level((ph, pw), max(ph, pw) / COARSE_PX)
    pc0 = np.moveaxis(_resize(photo, pshape).astype(np.float32), -1, 0)
    sigma = HIGHPASS * max(h, w)  # scan pixels: what is broader is lighting, not paint
    feats = _whiten(_standardise(_highpass(images, sigma)), 3)
    lo, hi = FOOTPRINT
    big = max(pshape)
    scales = big * np.exp(np.arange(np.log(lo), np.log(hi) + 1e-9, np.log(SCALE_STEP))) / max(h, w)
    from scipy import fft
    found: list[tuple[float, np.ndarray]] = []
    for scale in scales:  # coarse photo pixels per scan pixel
        # the scan reduced to about the coarse photo's sampling before rotating (no aliasing)
        f = max(1.0, 1.0 / scale)
        s_shape, s_to_full = _level((h, w), f)
        small = np.stack([_resize(a, s_shape) for a in feats])
        s_scale = scale * f
        diag = int(np.ceil(scale * np.hypot(h, w))) + 3
        fft_shape = (fft.next_fast_len(pshape[0] + diag, real=True),
                     fft.next_fast_len(pshape[1] + diag, real=True))
        pc = _whiten(_standardise(_highpass(pc0, sigma * scale)), 3)
        spectrum = _PhotoSpectrum(pc, fft_shape)
        for quarter in range(4):
            for angle in ANGLES_DEG:
                rot = _similarity(s_scale, 90.0 * quarter + angle)
                turned = apply(rot, corners(s_shape))
                x0, y0 = np.floor(turned.min(axis=0))
                x1, y1 = np.ceil(turned.max(axis=0))
                tw, th = int(x1 - x0) + 1, int(y1 - y0) + 1
                place = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1.0]]) @ rot
                warp = place[:2].astype(np.float32)
                templ = np.stack([cv2.warpAffine(a, warp, (tw, th), flags=cv2.INTER_LINEAR)
                                  for a in small])
                mask = cv2.warpAffine(np.ones(s_shape, np.float32), warp, (tw, th),
                                      flags=cv2.INTER_LINEAR) > 0.99
                if mask.sum() < 16:
                    continue
                score, n = spectrum.correlate(templ, mask)
                # squared correlations weighted by the overlap: a small overlap (the scan's
                # edge against the frame) correlates well by chance, the whole scan does not
                full = min(float(mask.sum()), float(pc.shape[1] * pc.shape[2]))
                share = np.minimum(n / full, 1.0)
                score = np.where(share >= MIN_OVERLAP, score / len(templ) * np.sqrt(share), 0)
                idx = int(np.argmax(score))
                r, c = divmod(idx, fft_shape[1])
                # the template's (0, 0) sits at coarse photo (c − tw + 1, r − th + 1)
                shift = np.array([[1, 0, c - tw + 1], [0, 1, r - th + 1], [0, 0, 1.0]])
                m = p_to_full @ shift @ place @ np.linalg.inv(s_to_full)
                found.append((float(score.flat[idx]), m))
    found.sort(key=lambda t: -t[0])
    kept: list[tuple[float, np.ndarray]] = []
    centre = np.array([[(w - 1) / 2, (h - 1) / 2], [(w - 1) / 2 + 1, (h - 1) / 2]])
    near = 0.04 * max(ph, pw)
    for score, m in found:  # neighbouring scales and angles find the same placement
        c = apply(m, centre)
        if all(np.linalg.norm(c[0] - apply(k, centre)[0]) > near
               or np.dot(c[1] - c[0], (d := apply(k, centre))[1] - d[0]) <= 0.9 * np.linalg.norm(
                   c[1] - c[0]) * np.linalg.norm(d[1] - d[0]) for _s, k in kept):
            kept.append((score, m))
        if len(kept) == top:
            break
    return kept


def _cca(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first canonical pair of ``x`` (n, k) and ``y`` (n, c): weights, and the canonical
    correlations (largest first; as many as the smaller of the two sides has independent
    columns: a grey photo's three equal channels give one)."""
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    n = max(len(x) - 1, 1)

    def inv_sqrt(c: np.ndarray) -> tuple[np.ndarray, int]:
        vals, vecs = np.linalg.eigh(c + 1e-6 * np.trace(c) / len(c) * np.eye(len(c)))
        rank = int((vals > 1e-4 * max(float(vals.max()), 1e-300)).sum())
        return vecs @ np.diag(1 / np.sqrt(np.maximum(vals, 1e-12))) @ vecs.T, rank

    (wx, rx), (wy, ry) = inv_sqrt(x.T @ x / n), inv_sqrt(y.T @ y / n)
    u, s, vt = np.linalg.svd(wx @ (x.T @ y / n) @ wy)
    return wx @ u[:, 0], wy @ vt[0], s[: max(min(rx, ry), 1)]


def _warp_photo(photo_l: np.ndarray, m_l: np.ndarray, shape: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray]:
    """The level photo (h, w, c) resampled on the level scan grid, and where it is valid."""
    import cv2

    h, w = shape
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    out = cv2.warpPerspective(photo_l, m_l, (w, h), flags=flags)
    if out.ndim == 2:
        out = out[..., None]
    valid = cv2.warpPerspective(np.ones(photo_l.shape[:2], np.float32), m_l, (w, h),
                                flags=flags) > 0.99
    return out, valid


def _ecc(templ: np.ndarray, image: np.ndarray, m_l: np.ndarray, motion: str,
         margin: int = 0, iterations: int = 60) -> tuple[float, np.ndarray]:
    """ECC from ``m_l``; the template's outer ``margin`` pixels are left out (there the scan's
    high-pass sees a mirrored scan, the photo's the paint around it)."""
    import cv2

    kind = {"similarity": cv2.MOTION_AFFINE, "affine": cv2.MOTION_AFFINE,
            "homography": cv2.MOTION_HOMOGRAPHY}[motion]
    warp = m_l.astype(np.float32) if kind == cv2.MOTION_HOMOGRAPHY else \
        (m_l / m_l[2, 2])[:2].astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 1e-6)
    mask = np.ones(image.shape[:2], np.uint8)
    inner = np.zeros(templ.shape, np.uint8)
    inner[margin : templ.shape[0] - margin, margin : templ.shape[1] - margin] = 1
    if inner.sum() < 0.3 * inner.size:
        inner[:] = 1
    rho, warp = cv2.findTransformECCWithMask(templ, image, inner, mask, warp, kind, criteria, 3)
    out = warp.astype(np.float64) if kind == cv2.MOTION_HOMOGRAPHY else np.vstack(
        [warp.astype(np.float64), [0, 0, 1]])
    return float(rho), out / out[2, 2]


def _scale_of(m: np.ndarray, at: np.ndarray) -> float:
    """Photo pixels per scan pixel of ``m`` near the scan point ``at``."""
    return float(np.sqrt(abs(np.linalg.det(jacobian(m, at)))))


class _Photo:
    """The photograph and its reduced copies (float32, made once per reduction step and kept
    for the next candidates; the full-size photo stays as it came, uint8 as a rule)."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.shape = image.shape
        self._levels: dict[float, tuple[np.ndarray, np.ndarray]] = {}

    def level(self, factor: float) -> tuple[np.ndarray, np.ndarray]:
        """The photo reduced by about ``factor`` (quarter steps of an octave) and the matrix
        from its pixel centres to the full photo's."""
        factor = 2.0 ** (np.round(4 * np.log2(max(factor, 1.0))) / 4)
        if factor not in self._levels:
            shape, to_full = _level(self.shape[:2], factor)
            reduced = _resize(self.image, shape).astype(np.float32)
            if len(self._levels) >= 6:
                self._levels.pop(next(iter(self._levels)))
            self._levels[factor] = (reduced, to_full)
        return self._levels[factor]


def _photo_level(photo: _Photo, m: np.ndarray, s_shape: tuple[int, int], f: float,
                 full: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, float]:
    """The photo reduced to about 1.5 of its pixels per level-``f`` scan pixel and high-passed
    like the scan; with its pixel matrix to the full photo and the high-pass's sigma."""
    h, w = full
    sigma = max(2.0, HIGHPASS_FINE * max(s_shape))
    scale = _scale_of(m, np.array([w / 2, h / 2])) * f  # photo px per level scan px
    reduced, p_to_full = photo.level(scale / 1.5)
    p_factor = p_to_full[0, 0]
    photo_l = np.moveaxis(_highpass(np.moveaxis(reduced, -1, 0), sigma * scale / p_factor),
                          0, -1).copy()
    return photo_l, p_to_full, sigma


def refine(images: np.ndarray, photo: np.ndarray, matrix: np.ndarray, model: str = "homography",
           factors: tuple[float, ...] | None = None
           ) -> tuple[np.ndarray, float, float, float | None]:
    """ECC on canonical images, coarse to fine (scan reduced by each of ``factors``, by default
    down to its own pixels), from ``matrix``; returns the refined matrix, the canonical
    correlation at the last level, the best one by chance (the scan misaligned) and the second
    canonical correlation (None when there is one only: a grey photo, a scan of one image)."""
    import cv2

    k, h, w = images.shape
    finest = pyramid((h, w))[-1]
    if factors is None:
        factors = pyramid((h, w))
    m = np.asarray(matrix, np.float64)
    if not isinstance(photo, _Photo):
        photo = _Photo(photo)
    for li, f in enumerate(factors):
        last = li == len(factors) - 1
        s_shape, s_to_full = _level((h, w), f)
        photo_l, p_to_full, sigma = _photo_level(photo, m, s_shape, f, (h, w))
        feats = _highpass(np.stack([_resize(a, s_shape) for a in images]), sigma)
        for _round in range(2 if last and f == finest else 1):
            m_l = np.linalg.inv(p_to_full) @ m @ s_to_full
            seen, valid = _warp_photo(photo_l, m_l, s_shape)
            if valid.sum() < 32:
                raise RegistrationError(f"the scan falls outside the photo; {HINT}")
            a, b, _ = _cca(feats[:, valid].T.astype(np.float64),
                           seen[valid].astype(np.float64))
            templ = np.tensordot(a, feats, axes=1).astype(np.float32)
            image = (photo_l @ b.astype(np.float32)).astype(np.float32)
            motion = model if f == finest else (
                "affine" if model != "similarity" else "similarity")
            try:
                _rho, m_l = _ecc(templ, image, m_l, motion, int(np.ceil(MARGIN * sigma)))
            except cv2.error:
                raise RegistrationError(f"the registration did not converge; {HINT}") from None
            m = p_to_full @ m_l @ np.linalg.inv(s_to_full)
    seen, valid = _warp_photo(photo_l, np.linalg.inv(p_to_full) @ m @ s_to_full, s_shape)
    x, y = feats[:, valid].T.astype(np.float64), seen[valid].astype(np.float64)
    if len(x) < 32:
        raise RegistrationError(f"the scan falls outside the photo; {HINT}")
    corr = _cca(x, y)[2]
    rho, second = float(corr[0]), (float(corr[1]) if len(corr) > 1 else None)
    null = 0.0
    lh, lw = s_shape
    for dy, dx in ((lh // 3, lw // 3), (lh // 2, 0), (0, lw // 2), (-lh // 3, lw // 2)):
        moved = np.roll(feats, (dy, dx), axis=(1, 2))
        null = max(null, float(_cca(moved[:, valid].T.astype(np.float64), y)[2][0]))
    return m, rho, null, second


def pyramid(shape: tuple[int, int]) -> tuple[float, ...]:
    """The scan's reduction factors, coarse to fine, ending at its own pixels, or for a large
    scan at ``FINEST_PX`` on its longest side (a tenth of its pixel is as sure there)."""
    finest = 2.0 ** max(0, int(np.ceil(np.log2(max(shape) / FINEST_PX))))
    return tuple(f for f in (16.0, 8.0, 4.0, 2.0) if max(shape) / f >= 48 and f > finest) + (
        finest,)


def auto_register(images: np.ndarray, photo: np.ndarray, model: str = "homography",
                  start: np.ndarray | None = None) -> AutoResult:
    """Register scan images (k, h, w: element maps, counts) to an RGB photo (H, W, 3) without
    control points (or refine a ``start`` matrix); refused when the result is not clearly
    better than chance."""
    images = np.asarray(images, np.float32)
    photo = _Photo(np.asarray(photo))
    levels = pyramid(images.shape[1:])
    if start is not None:
        starts = [np.asarray(start, np.float64)]
    else:
        starts = [m for _score, m in coarse_search(images, photo.image, top=CANDIDATES)]
    # every candidate refined on the coarse levels (cheap), the best on to the finest
    coarse = [f for f in levels if max(images.shape[1:]) / f <= 128] or [levels[0]]
    ranked = []
    for m0 in starts:
        try:
            m, rho, null, _second = refine(images, photo, m0, model, tuple(coarse))
        except RegistrationError:
            continue
        if _plausible(m, images.shape[1:], photo.shape[:2]):
            ranked.append((rho - null, m))
    ranked.sort(key=lambda t: -t[0])
    best = None
    # the runner-up goes on only when it came close (it costs the fine levels again)
    close = [m0 for gain, m0 in ranked[:2] if gain >= 0.8 * ranked[0][0]]
    for m0 in close:
        try:
            m, rho, null, second = refine(images, photo, m0, model, tuple(
                f for f in levels if f < coarse[-1]) or (levels[-1],))
        except RegistrationError:
            continue
        if _plausible(m, images.shape[1:], photo.shape[:2]) and (
                best is None or rho - null > best[1] - best[2]):
            best = (m, rho, null, second)
    if best is None:
        raise RegistrationError("cannot register the scan to this photo automatically (no "
                                "plausible transform brings it onto the photo): is it a photo "
                                f"of the scanned painting? {HINT}")
    m, rho, null, second = best
    overlap = _overlap(m, images.shape[1:], photo.shape[:2])
    if rho < MIN_CORRELATION or rho < MIN_CONTRAST * null:
        raise RegistrationError(
            f"cannot register the scan to this photo automatically (best correlation "
            f"{rho:.2f}, {null:.2f} by chance): is it a photo of the scanned painting? {HINT}")
    if second is not None and np.sqrt(rho * max(second, 0.0)) < MIN_SUPPORT:
        raise RegistrationError(
            f"cannot register the scan to this photo automatically (the best placement, "
            f"correlation {rho:.2f}, matches the photo in one way only: {second:.2f} in any "
            f"other): is it a photo of the scanned painting? {HINT}")
    return AutoResult(m, rho, null, second, overlap)


def _overlap(m: np.ndarray, scan: tuple[int, int], photo: tuple[int, int]) -> float:
    """Share of the scan's pixels whose centres ``m`` puts inside the photo."""
    h, w = scan
    ys, xs = np.linspace(0, h - 1, min(h, 200)), np.linspace(0, w - 1, min(w, 200))
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    p = apply(m, np.c_[xx.ravel(), yy.ravel()])
    inside = (p[:, 0] >= -0.5) & (p[:, 0] <= photo[1] - 0.5) & (p[:, 1] >= -0.5) & (
        p[:, 1] <= photo[0] - 0.5)
    return float(inside.mean())


def _enough_overlap(m: np.ndarray, scan: tuple[int, int], photo: tuple[int, int]) -> bool:
    """Whether scan and photo share at least ``MIN_OVERLAP`` of the smaller of the two."""
    h, w = scan
    shared = _overlap(m, scan, photo) * h * w
    photo_in_scan_px = photo[0] * photo[1] / _scale_of(m, np.array([w / 2, h / 2])) ** 2
    return shared >= MIN_OVERLAP * min(h * w, photo_in_scan_px)


def _plausible(m: np.ndarray, scan: tuple[int, int], photo: tuple[int, int]) -> bool:
    """A photo of a flat painting: the transform keeps the scan's orientation, stretches it by
    at most ``MAX_STRETCH`` in any direction, changes its scale by at most ``MAX_PERSPECTIVE``
    from corner to corner, and enough of the scan and photo overlap."""
    h, w = scan
    points = np.array([[w / 2, h / 2], [0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], float)
    scales = []
    for at in points:
        j = jacobian(m, at)
        sv = np.linalg.svd(j, compute_uv=False)
        if np.linalg.det(j) <= 0 or sv[0] > MAX_STRETCH * sv[1]:
            return False
        scales.append(np.sqrt(sv[0] * sv[1]))
    if max(scales) > MAX_PERSPECTIVE * min(scales):
        return False
    return _enough_overlap(m, scan, photo)
