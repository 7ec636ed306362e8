"""Automatic registration of generated scans to generated photographs of the same paintings.

Each case plants a painting (a mosaic of paints, or the demo's smooth fields), photographs it
(:func:`maxrf.demo.photograph`: brush texture, canvas weave, an underdrawing XRF cannot see,
varnish, uneven light, JPEG) through a known transform (a quarter turn ± a few degrees, 2-8 photo
pixels per scan pixel, mild perspective, the scan wholly or partly in the photo), and registers the
noisy maps (Poisson counts) to it without control points (affine; a homography where the photo
has perspective). The error is the distance between the
true and the found positions of the corners of the part of the scan the photo shows, in scan
pixels. ``--big`` times one 8000 x 6000 photo against a 1692 x 1592 scan.
Usage: python benchmarks/register.py [--size 96x128] [--big]
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
from PIL import Image

from maxrf.demo import DemoSpec, photo_transform, photograph, planted_maps
from maxrf.imaging.autoregister import auto_register, scan_images
from maxrf.imaging.registration import RegistrationError, apply

# (scale, angle°, shift x, y (photo px), perspective, photo height, width, painting)
CASES = (
    (4.0, 3.0, (60, 40), 0.0, (600, 800), "mosaic"),
    (2.5, 92.0, (400, 60), 1e-4, (500, 600), "mosaic"),
    (6.0, 183.0, (900, 700), 0.0, (800, 1000), "mosaic"),
    (3.0, 268.0, (100, 500), -1e-4, (700, 700), "mosaic"),
    (8.0, -4.0, (100, 100), 0.0, (900, 1200), "mosaic"),
    (5.0, 87.0, (800, -100), 5e-5, (700, 900), "mosaic"),
    (2.0, 176.0, (300, 250), 0.0, (260, 300), "mosaic"),
    (7.0, -2.0, (-300, -200), 0.0, (600, 800), "mosaic"),
    (2.2, 275.0, (500, 800), 8e-5, (1200, 1400), "mosaic"),
    (3.5, 5.0, (-150, -60), 0.0, (450, 500), "mosaic"),
    (6.0, 2.0, (-350, -250), 0.0, (400, 500), "mosaic"),  # a detail photo: 31 % of the scan
    (5.0, 182.0, (420, 330), 0.0, (350, 420), "mosaic"),  # 44 %
    (4.0, 88.0, (200, -150), 0.0, (330, 330), "mosaic"),  # 36 %
    (4.0, 3.0, (60, 40), 0.0, (600, 800), "fields"),
    (6.0, 183.0, (900, 700), 0.0, (800, 1000), "fields"),
)


def jpeg(rgb: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=85)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def noisy_maps(spec: DemoSpec, counts: float = 40.0) -> tuple[list[str], list[np.ndarray]]:
    """Planted maps as a scan's fit would give them: Poisson counts at about ``counts`` per
    pixel for the strongest element."""
    elements, maps, _paints = planted_maps(spec)
    rng = np.random.default_rng(spec.seed)
    scale = counts / max(float(maps.max()), 1e-9)
    return elements, [rng.poisson(np.clip(m, 0, None) * scale).astype(np.float32) for m in maps]


def seen_corners(true: np.ndarray, scan: tuple[int, int], photo: tuple[int, int]
                 ) -> tuple[np.ndarray, float]:
    """The corners of the bounding box of the scan pixels the photo shows (scan coordinates),
    and the share of the scan's pixels it shows."""
    h, w = scan
    yy, xx = np.mgrid[0:h, 0:w]
    p = apply(true, np.c_[xx.ravel(), yy.ravel()])
    inside = (p[:, 0] >= 0) & (p[:, 0] <= photo[1] - 1) & (p[:, 1] >= 0) & (p[:, 1] <= photo[0] - 1)
    cols, rows = xx.ravel()[inside], yy.ravel()[inside]
    c0, c1, r0, r1 = cols.min() - 0.5, cols.max() + 0.5, rows.min() - 0.5, rows.max() + 0.5
    return np.array([[c0, r0], [c1, r0], [c1, r1], [c0, r1]]), float(inside.mean())


def run_cases(h: int, w: int) -> None:
    print(f"{'painting':>8} {'scale':>5} {'angle':>6} {'persp':>7} {'photo':>10} {'shown':>5} "
          f"{'median':>6} {'worst':>6} {'corr':>5} {'chance':>6} {'2nd':>5} {'s':>5}")
    meds, worsts = [], []
    made = {}
    for scale, angle, shift, persp, size, painting in CASES:
        if painting not in made:
            spec = DemoSpec(height=h, width=w, seed=3, paints=6 if painting == "mosaic" else 0)
            made[painting] = (spec, *noisy_maps(spec))
        spec, elements, maps = made[painting]
        true = photo_transform(scale, angle, shift, persp)
        photo = jpeg(photograph(elements, planted_maps(spec)[1], true, size, seed=1))
        corners, shown = seen_corners(true, (h, w), size)
        t = time.perf_counter()
        try:
            r = auto_register(scan_images(maps), photo, "homography" if persp else "affine")
        except RegistrationError as exc:
            print(f"{painting:>8} {scale:5.1f} {angle:6.1f} {persp:7.0e} {size[1]:>4}x{size[0]:<5} "
                  f"{shown:5.2f} refused: {exc}")
            continue
        err = np.linalg.norm(apply(r.matrix, corners) - apply(true, corners), axis=1)
        err /= np.sqrt(abs(np.linalg.det(true[:2, :2])))
        if painting == "mosaic":
            meds.append(np.median(err))
            worsts.append(err.max())
        print(f"{painting:>8} {scale:5.1f} {angle:6.1f} {persp:7.0e} {size[1]:>4}x{size[0]:<5} "
              f"{shown:5.2f} {np.median(err):6.2f} {err.max():6.2f} {r.correlation:5.2f} "
              f"{r.null_correlation:6.2f} {r.second_correlation or 0.0:5.2f} "
              f"{time.perf_counter() - t:5.1f}")
    if meds:
        print(f"mosaics: median corner error {np.median(meds):.2f} scan px (goal <= 0.5), "
              f"worst {max(worsts):.2f} (goal <= 1.5), {len(meds)} of "
              f"{sum(c[-1] == 'mosaic' for c in CASES)} registered")


def run_big(paints: int = 20) -> None:
    """One 8000 x 6000 photo, one 1692 x 1592 scan of ``paints`` paints (40 patches): the time
    of the registration alone."""
    h, w = 1692, 1592
    spec = DemoSpec(height=h, width=w, seed=5, paints=paints)
    t = time.perf_counter()
    elements, maps = noisy_maps(spec, counts=60.0)
    true = photo_transform(3.3, 91.0, (7400, 500), 2e-6)
    photo = jpeg(photograph(elements, planted_maps(spec)[1], true, (6000, 8000), seed=2))
    print(f"made the scan's maps and an 8000 x 6000 photo in {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    r = auto_register(scan_images(maps), photo)
    took = time.perf_counter() - t
    corners, _shown = seen_corners(true, (h, w), photo.shape[:2])
    err = np.linalg.norm(apply(r.matrix, corners) - apply(true, corners), axis=1) / 3.3
    print(f"1692 x 1592 scan ({paints} paints) to 8000 x 6000 photo: {took:.1f} s (goal <= 20 s), "
          f"corner error "
          f"median {np.median(err):.2f}, worst {err.max():.2f} scan px, correlation "
          f"{r.correlation:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", default="96x128", help="the scans of the cases (HxW)")
    ap.add_argument("--big", action="store_true", help="also time the real-size case")
    ap.add_argument("--big-paints", type=int, default=20, help="paints of the real-size painting")
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    run_cases(h, w)
    if args.big:
        run_big(args.big_paints)


if __name__ == "__main__":
    main()
