"""Registration of a scan to a photograph of the painting, from control points or automatically.

A CSV of point pairs (a scan pixel's column and row, and the same spot's x and y in the photo's
pixels) gives a transform (similarity, affine or homography: least squares, the homography by the
normalised DLT) mapping the scan's (col, row) pixel centres to the photo's (x, y); its residual at
the points says how well. Stored as the layer ``maxrf_registration``: a downsampled copy of the
photo (for the viewer) with the matrix, model, method, residual and the photo's name, size and
fingerprint in its attrs. Without points the transform is found automatically
(:mod:`maxrf.imaging.autoregister`). Maps are then warped onto the photo strip by strip (bounded
memory).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from maxrf.datastack import DataStack
from maxrf.imaging.geometry import RegistrationError, apply, corners

__all__ = ["RegistrationError", "apply", "butterfly_points", "corner_errors", "fit_transform",
           "load_photo", "photo_factor", "photo_on_scan", "read_points", "registration_layer",
           "warp_to_photo"]

MODELS = {"similarity": 2, "affine": 3, "homography": 4}  # the fewest point pairs each needs
PREVIEW_PX = 1600  # the stored photo's longest side


def read_points(path: str | Path, scan: tuple[int, int] | None = None,
                photo: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(scan (col, row), photo (x, y))`` from a CSV of ``scan_col, scan_row, photo_x,
    photo_y`` rows (a header line, if any, is skipped; ``#`` starts a comment), or from a
    Butterfly Registrator control-point file (:func:`butterfly_points`; needs the ``scan`` and
    ``photo`` sizes, height × width)."""
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise RegistrationError(f"cannot read the points ({exc.strerror})", path) from None
    if text.lstrip().startswith("Butterfly Registrator"):
        if scan is None or photo is None:
            raise RegistrationError("a Butterfly Registrator file needs the scan's and the "
                                    "photo's sizes", path)
        return butterfly_points(text, scan, photo, path)
    src, dst = [], []
    for n, row in enumerate(csv.reader(line for line in text.splitlines()
                                        if line.strip() and not line.lstrip().startswith("#"))):
        try:
            values = [float(v) for v in row[:4]]
        except ValueError:
            if n == 0:
                continue  # a header
            raise RegistrationError(f"line {n + 1}: expected 4 numbers, got {row}", path) from None
        if len(values) != 4 or not np.all(np.isfinite(values)):
            raise RegistrationError(f"line {n + 1}: expected 4 numbers, got {row}", path)
        src.append(values[:2])
        dst.append(values[2:])
    return np.array(src, dtype=np.float64).reshape(-1, 2), np.array(dst, np.float64).reshape(-1, 2)


def butterfly_points(text: str, scan: tuple[int, int], photo: tuple[int, int],
                     path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Control points saved by the Van Gogh Museum's Butterfly Registrator (``|``-separated:
    a header, ``target`` and the photo's file name, ``moving`` and the map's, ``x|y|x|y``, then
    one row per point: photo x, y, map x, y). Its positions are Qt scene coordinates (a pixel's
    centre at +0.5), the map's in the map resized, keeping its aspect, to the photo's width or
    height ("moving image resized and padded to match target image dimensions"); the map is
    taken to be the scan's size (an ``EL.tif`` of ``maxrf maps --export``)."""
    rows = [line.split("|") for line in text.splitlines() if line.strip()]
    try:
        start = next(i for i, r in enumerate(rows) if r[:4] == ["x", "y", "x", "y"]) + 1
        values = np.array([[float(v) for v in r[:4]] for r in rows[start:]], np.float64)
    except (StopIteration, ValueError):
        raise RegistrationError("not a Butterfly Registrator control-point file I can read "
                                "(no 'x|y|x|y' line followed by numbers)", path) from None
    if values.ndim != 2 or values.shape[1] != 4 or not len(values):
        raise RegistrationError("the Butterfly Registrator file holds no points", path)
    (h, w), (ph, pw) = scan, photo
    factor = pw / w if w / h > pw / ph else ph / h  # the map as the Registrator resized it
    dst = values[:, :2] - 0.5
    src = values[:, 2:] / factor - 0.5
    return src, dst


def _normalise(p: np.ndarray) -> np.ndarray:
    """Hartley's normalisation: centroid at 0, mean distance √2."""
    c = p.mean(axis=0)
    s = np.sqrt(2) / max(np.mean(np.linalg.norm(p - c, axis=1)), 1e-12)
    return np.array([[s, 0, -s * c[0]], [0, s, -s * c[1]], [0, 0, 1]])


def fit_transform(src: np.ndarray, dst: np.ndarray, model: str = "affine") -> np.ndarray:
    """The 3 × 3 matrix mapping ``src`` (x, y) points to ``dst`` in the least-squares sense."""
    if model not in MODELS:
        raise RegistrationError(f"unknown model {model!r} (expected {', '.join(MODELS)})")
    need = MODELS[model]
    if len(src) < need:
        raise RegistrationError(f"a {model} needs at least {need} point pairs, got {len(src)}")
    ts, td = _normalise(src), _normalise(dst)
    s = (ts @ np.c_[src, np.ones(len(src))].T).T[:, :2]
    d = (td @ np.c_[dst, np.ones(len(dst))].T).T[:, :2]
    if model == "similarity":  # x' = a x − b y + tx, y' = b x + a y + ty
        a = np.zeros((2 * len(s), 4))
        a[0::2] = np.c_[s[:, 0], -s[:, 1], np.ones(len(s)), np.zeros(len(s))]
        a[1::2] = np.c_[s[:, 1], s[:, 0], np.zeros(len(s)), np.ones(len(s))]
        p, *_ = np.linalg.lstsq(a, d.reshape(-1), rcond=None)
        m = np.array([[p[0], -p[1], p[2]], [p[1], p[0], p[3]], [0, 0, 1]])
    elif model == "affine":
        p, *_ = np.linalg.lstsq(np.c_[s, np.ones(len(s))], d, rcond=None)
        m = np.vstack([p.T, [0, 0, 1]])
    else:  # the direct linear transform
        rows = []
        for (x, y), (u, v) in zip(s, d, strict=True):
            rows.append([-x, -y, -1, 0, 0, 0, u * x, u * y, u])
            rows.append([0, 0, 0, -x, -y, -1, v * x, v * y, v])
        _u, sv, vt = np.linalg.svd(np.array(rows))
        m = vt[-1].reshape(3, 3)
        if sv.size >= 8 and sv[-2] < 1e-9 * sv[0]:
            raise RegistrationError("the points are degenerate (collinear?): no homography")
    out = np.linalg.inv(td) @ m @ ts
    if abs(out[2, 2]) < 1e-15:
        raise RegistrationError("the points give a degenerate transform")
    out = out / out[2, 2]
    if abs(np.linalg.det(out[:2, :2])) < 1e-12:
        raise RegistrationError("the points are degenerate (all on one line?)")
    return out


def load_photo(path: str | Path) -> np.ndarray:
    """The photo as RGB uint8 (PNG, JPEG, TIFF; any size Pillow opens)."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise RegistrationError("photo not found", path)
    Image.MAX_IMAGE_PIXELS = 400_000_000  # a 20 000 × 20 000 museum photo is fine
    try:
        with Image.open(path) as img:
            if img.mode in ("I", "F") or img.mode.startswith("I;16"):
                # 16-bit or float grey (a scientific camera's TIFF): scaled to its own range,
                # not clipped at 255 (PIL's own conversion makes it all white)
                grey = np.asarray(img, np.float64)
                lo, hi = np.nanpercentile(grey, [0.1, 99.9]) if grey.size else (0.0, 1.0)
                grey = np.clip((grey - lo) / max(hi - lo, 1e-12) * 255, 0, 255)
                return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise RegistrationError(f"not a readable image ({exc})", path) from None


def registration_images(datastack: str | Path | DataStack) -> list[np.ndarray]:
    """What the scan shows of the painting: its element maps and its total counts per pixel."""
    ds = DataStack.of(datastack)
    out: list[np.ndarray] = []
    if "maxrf_elementmaps" in ds:
        out += list(ds.read("maxrf_elementmaps"))
    if "maxrf_bandcumsum" in ds:
        cumsum = ds.array("maxrf_bandcumsum")
        out.append(np.asarray(cumsum[cumsum.shape[0] - 1], np.float32))
    if not out:
        raise RegistrationError("nothing to register: the datastack has no element maps and no "
                                "band layers (process the scan first)", ds.path)
    return out


def registration_layer(datastack: str | Path | DataStack, photo: str | Path,
                       points: str | Path | None = None, model: str | None = None,
                       provenance: dict | None = None, refine: bool = False) -> dict[str, str]:
    """The scan → photo transform, from control points when given, else found automatically
    (:mod:`maxrf.imaging.autoregister`), committed as ``maxrf_registration`` (a preview of the
    photo; the matrix, model, method and quality in its attrs). Every check comes before
    anything is written; returns ``{layer: stored name}``."""
    import time

    from maxrf.io.fingerprint import file_fingerprint

    started = time.time()
    ds = DataStack.of(datastack)
    ds.require_file()
    if "maxrf_raw" not in ds:
        raise RegistrationError("no scan in this datastack: convert it first", ds.path)
    h, w = ds.array("maxrf_raw").shape[:2]
    image = load_photo(photo)
    model = model or "affine"
    if model not in MODELS:
        raise RegistrationError(f"unknown model {model!r} (expected {', '.join(MODELS)})")
    matrix = None
    method = ("automatic: coarse search of rotations, scales and shifts, then ECC on the "
              "canonical images of scan and photo")
    quality: dict = {}
    if points:
        src, dst = read_points(points, (h, w), image.shape[:2])
        matrix = fit_transform(src, dst, model)
        residual = np.linalg.norm(apply(matrix, src) - dst, axis=1)
        method = f"control points ({len(src)} pairs)"
        quality["residual_px"] = {"rms": float(np.sqrt(np.mean(residual**2))),
                                  "max": float(residual.max())}
    if matrix is None or refine:  # found from the images (from the points' transform)
        from maxrf.imaging.autoregister import auto_register, scan_images

        found = auto_register(scan_images(registration_images(ds)), image, model, start=matrix)
        quality.update(correlation=found.correlation, chance_correlation=found.null_correlation,
                       second_correlation=found.second_correlation, overlap=found.overlap)
        if matrix is not None:
            method += ", refined by matching the maps to the photo"
            quality["points_moved_px"] = float(np.max(np.linalg.norm(
                apply(found.matrix, src) - apply(matrix, src), axis=1)))
        matrix = found.matrix
    ph, pw = image.shape[:2]
    in_photo = apply(matrix, corners((h, w)))
    if not (np.all(in_photo[:, 0] > -pw) and np.all(in_photo[:, 0] < 2 * pw)
            and np.all(in_photo[:, 1] > -ph) and np.all(in_photo[:, 1] < 2 * ph)):
        raise RegistrationError("the points put the scan far outside the photo: check their "
                                "order (scan_col, scan_row, photo_x, photo_y)", Path(points or ""))
    step = max(1, int(np.ceil(max(ph, pw) / PREVIEW_PX)))
    preview = np.ascontiguousarray(image[::step, ::step])
    attrs = {
        "photo": {"name": Path(photo).name, "width": int(pw), "height": int(ph),
                  "fingerprint": file_fingerprint(photo)},
        "matrix": matrix.tolist(),
        "model": model,
        "method": method,
        **quality,
        "corners_in_photo": in_photo.tolist(),
        "preview_step": step,
        "maps": "scan (col, row) pixel centres → photo (x, y) pixels",
    }
    meta = {"step": "register", "params": {"photo": str(photo), "photo_points": str(points or ""),
                                           "refine_points": refine, "registration_model": model},
            **(provenance or {}), "duration_s": round(time.time() - started, 3)}
    with ds.appending() as app:
        app.write("maxrf_registration", preview, attrs=attrs)
        app.finish("maxrf_registration", {"maxrf": meta})
    return app.committed


def warp_to_photo(image: np.ndarray, matrix: np.ndarray, shape: tuple[int, int],
                  rows: int = 512) -> np.ndarray:
    """A scan image (height × width) resampled onto the photo's pixel grid (nearest pixel;
    NaN outside the scan), strip by strip of the photo."""
    from scipy.ndimage import map_coordinates

    inv = np.linalg.inv(np.asarray(matrix, dtype=np.float64))
    ph, pw = shape
    out = np.full((ph, pw), np.nan, np.float32)
    xs = np.arange(pw, dtype=np.float64)
    for r0 in range(0, ph, rows):
        yy, xx = np.meshgrid(np.arange(r0, min(r0 + rows, ph), dtype=np.float64), xs,
                             indexing="ij")
        src = apply(inv, np.c_[xx.ravel(), yy.ravel()])
        col, row = src[:, 0], src[:, 1]
        inside = (col >= -0.5) & (col < image.shape[1] - 0.5) & (row >= -0.5) & (
            row < image.shape[0] - 0.5)
        vals = map_coordinates(np.asarray(image, np.float32), [row, col], order=0,
                               mode="nearest")
        vals[~inside] = np.nan
        out[r0 : r0 + rows] = vals.reshape(yy.shape)
    return out


def photo_factor(shape: tuple[int, int]) -> int:
    """Samples per scan pixel each way of the photo on a scan of ``shape``: about 2000 px on
    the long side, 1 to 4."""
    return int(max(1, min(4, 2000 // max(*shape, 1))))


def photo_on_scan(preview: np.ndarray, attrs: dict, shape: tuple[int, int],
                  factor: int | None = None) -> np.ndarray:
    """The registered photograph (its stored preview, ``attrs`` of ``maxrf_registration``)
    resampled onto the scan's grid of ``shape``, ``factor`` samples per scan pixel each way
    (default :func:`photo_factor`): RGB uint8, black outside the photo."""
    from scipy.ndimage import map_coordinates

    step = float(attrs.get("preview_step", 1))
    h, w = shape
    factor = factor or photo_factor(shape)
    rows = (np.arange(h * factor) + 0.5) / factor - 0.5
    cols = (np.arange(w * factor) + 0.5) / factor - 0.5
    cc, rr = np.meshgrid(cols, rows)
    xy = apply(np.array(attrs["matrix"]), np.c_[cc.ravel(), rr.ravel()]) / step
    out = np.zeros((h * factor * w * factor, 3), np.uint8)
    for c in range(3):
        out[:, c] = np.clip(map_coordinates(preview[..., c].astype(np.float32),
                                            [xy[:, 1], xy[:, 0]], order=1, mode="constant",
                                            cval=0.0), 0, 255)
    return out.reshape(h * factor, w * factor, 3)


def corner_errors(found: np.ndarray, true: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """How far ``found`` puts each outer corner of a scan of ``shape`` from where ``true`` puts
    it, in scan pixels (the true transform's scale)."""
    c = corners(shape)
    scale = np.sqrt(abs(np.linalg.det(np.asarray(true, np.float64)[:2, :2])))
    return np.linalg.norm(apply(found, c) - apply(true, c), axis=1) / scale
