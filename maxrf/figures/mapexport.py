"""Element-map exports: 16-bit TIFFs (one per element and one multi-page file), PNGs (linear and
histogram-equalised, with a colour bar in counts), an overview grid and RGB composites."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from maxrf.datastack import DataStack
from maxrf.errors import MaxrfError
from maxrf.exports.tiff import pixel_size_mm, read_maps, read_tiff, write_tiffs  # noqa: F401
from maxrf.figures.png import EXPORT_DPI, pyplot, save_png
from maxrf.io.atomic import atomic_write

COLORS = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1), "cyan": (0, 1, 1),
          "magenta": (1, 0, 1), "yellow": (1, 1, 0), "white": (1, 1, 1)}
DEFAULT_RGB = ("red", "green", "blue", "yellow")


def equalize(image: np.ndarray) -> np.ndarray:
    """Histogram equalisation to [0, 1]: each value's share of the positive values at or below
    it (equal values share one level; absent, ≤ 0, stays 0)."""
    flat = np.asarray(image, dtype=np.float64).ravel()
    out = np.zeros_like(flat)
    pos = flat > 0
    if pos.any():
        v = np.sort(flat[pos])
        out[pos] = np.searchsorted(v, flat[pos], "right") / v.size
    return out.reshape(np.shape(image))


def equalized_ticks(image: np.ndarray, levels=(0.25, 0.5, 0.75, 1.0)) -> tuple[list, list]:
    """Colour-bar ticks of an equalised map: 0 (absent) and the counts at each level."""
    v = np.sort(np.asarray(image, dtype=np.float64)[np.asarray(image) > 0])
    if not v.size:
        return [0.0], ["0"]
    return [0.0, *levels], ["0", *(f"{np.quantile(v, q):.3g}" for q in levels)]


def write_pngs(elements: list[str], maps: np.ndarray, folder: Path, scan: str = "",
               pixel_mm: float | None = None) -> list[Path]:
    """Per element a linear PNG with a colour bar in counts and a histogram-equalised one (a
    scale bar when the pixel size is known), and ``elementmaps_grid.png`` with every map side
    by side."""
    plt = pyplot()

    out = []
    for el, m in zip(elements, maps, strict=True):
        for kind in ("linear", "equalized"):
            fig, ax = plt.subplots(figsize=(6, 6 * m.shape[0] / max(m.shape[1], 1) + 0.6))
            shown = m if kind == "linear" else equalize(m)
            im = ax.imshow(shown, cmap="inferno", interpolation="nearest")
            ax.set_title(f"{el} ({kind}) {scan}".strip())
            ax.set_axis_off()
            if pixel_mm:
                scale_bar(ax, m.shape[1], pixel_mm)
            if kind == "linear":
                fig.colorbar(im, ax=ax, shrink=0.8, label="counts per pixel")
            else:
                cb = fig.colorbar(im, ax=ax, shrink=0.8,
                                  label="counts per pixel (equalised; absent = 0)")
                ticks, labels = equalized_ticks(m)
                cb.set_ticks(ticks)
                cb.set_ticklabels(labels)
            name = f"{el}_{kind}.png"
            out.append(save_png(fig, folder / name, EXPORT_DPI, tight=True))
    out.append(plot_grid(elements, maps, folder / "elementmaps_grid.png", scan))
    return out


MATERIAL_COLORS = ("#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7",
                   "#999999", "#882255", "#44aa99", "#117733", "#ddcc77")  # as the viewer's


def write_materials(ds: DataStack, folder: Path, scan: str = "",
                    pixel_mm: float | None = None) -> list[Path]:
    """``materials.tif`` (16-bit labels, ImageJ) and ``materials.png`` (a colour per material,
    its main elements in the legend) of a datastack's materials map."""
    import tifffile
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    labels = ds.read("maxrf_materials")
    attrs = ds.attrs("maxrf_materials")
    k = len(attrs["pixels"])
    names = [f"{m}: " + ", ".join(top) for m, top in enumerate(attrs["main_elements"])]
    spacing = {"resolution": (1.0 / pixel_mm, 1.0 / pixel_mm)} if pixel_mm else {}
    tif = atomic_write(folder / "materials.tif", lambda t: tifffile.imwrite(
        t, labels.astype(np.uint16), imagej=True, **spacing,
        metadata={"Labels": ["materials"], "Info": json.dumps({"materials": names}),
                  **({"unit": "mm"} if pixel_mm else {})}))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 6 * labels.shape[0] / max(labels.shape[1], 1) + 0.8))
    colors = [MATERIAL_COLORS[m % len(MATERIAL_COLORS)] for m in range(k)]
    ax.imshow(labels, cmap=ListedColormap(colors), vmin=-0.5, vmax=k - 0.5,
              interpolation="nearest")
    ax.set_title(f"materials {scan}".strip())
    ax.set_axis_off()
    if pixel_mm:
        scale_bar(ax, labels.shape[1], pixel_mm)
    ax.legend(handles=[Patch(color=c, label=n) for c, n in zip(colors, names, strict=True)],
              loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    png = save_png(fig, folder / "materials.png", EXPORT_DPI, tight=True)
    return [tif, png]


def scale_bar(ax, width_px: int, pixel_mm: float) -> float:
    """A white bar of a round length (1, 2 or 5 × 10ⁿ mm, about a fifth of the image) at the
    lower left of ``ax``; returns its length in mm."""
    from matplotlib.patches import Rectangle

    target = width_px * pixel_mm / 5
    p = 10 ** np.floor(np.log10(target))
    mm = float((5 if target / p >= 5 else 2 if target / p >= 2 else 1) * p)
    y0, y1 = ax.get_ylim()  # imshow: y grows downwards
    h = abs(y0 - y1)
    x, y = 0.04 * width_px, max(y0, y1) - 0.06 * h
    ax.add_patch(Rectangle((x, y), mm / pixel_mm, 0.015 * h + 0.5, color="white", ec="black",
                           lw=0.5))
    label = f"{mm:g} mm" if mm >= 1 else f"{mm * 1000:g} µm"
    ax.text(x, y - 0.02 * h, label, color="white", fontsize=8, va="bottom",
            bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "lw": 0})
    return mm


def plot_grid(
    elements: list[str], maps: np.ndarray, path: Path, scan: str = "", key: str | None = None
) -> Path:
    """Every element map in one figure, each with its own colour scale (counts)."""
    plt = pyplot()

    n = max(len(elements), 1)
    cols = min(4, n)
    rows = -(-n // cols)
    h, w = maps.shape[1:] if maps.ndim == 3 else (1, 1)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows * h / max(w, 1) + 0.5),
                             squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, el, m in zip(axes.ravel(), elements, maps, strict=False):
        top = float(np.percentile(m, 99.5)) or float(m.max()) or 1.0
        im = ax.imshow(m, cmap="inferno", vmin=0, vmax=top, interpolation="nearest")
        ax.set_title(f"{el}  (mean {m.mean():.1f} counts)")
        fig.colorbar(im, ax=ax, shrink=0.7)
    fig.suptitle(f"element maps {scan}".strip())
    return save_png(fig, path, EXPORT_DPI, key=key, tight=True)


def composite(
    maps: dict[str, np.ndarray], colors: list[str] | None = None, percentile: float = 99.5,
    gains: list[float] | None = None,
) -> np.ndarray:
    """An RGB image (height × width × 3, uint8) of up to four maps, each stretched to its
    ``percentile``, times its gain (contrast), and added in its colour (a name or ``#rrggbb``)."""
    if not 1 <= len(maps) <= 4:
        raise MaxrfError(f"a composite takes 1 to 4 element maps, got {len(maps)}")
    colors = list(colors or DEFAULT_RGB[: len(maps)])
    if len(colors) != len(maps):
        raise MaxrfError(f"{len(maps)} elements but {len(colors)} colours")
    first = next(iter(maps.values()))
    gains = list(gains or [1.0] * len(maps))
    if len(gains) != len(maps):
        raise MaxrfError(f"{len(maps)} elements but {len(gains)} gains")
    planes = np.zeros((3, *first.shape), np.float32)  # one contiguous plane per colour
    t = np.empty(first.shape, np.float32)
    part = np.empty(first.shape, np.float32)
    for (_el, m), c, g in zip(maps.items(), colors, gains, strict=True):
        np.multiply(m, g / stretch_top(m, percentile), out=t, casting="unsafe")
        np.clip(t, 0, 1, out=t)
        for k, v in enumerate(parse_color(c)):
            if v:
                np.multiply(t, v, out=part)
                planes[k] += part
    out = np.empty((*first.shape, 3), np.uint8)
    for k in range(3):
        np.clip(planes[k], 0, 1, out=planes[k])
        planes[k] *= 255
        out[..., k] = planes[k]
    return out


def stretch_top(m: np.ndarray, percentile: float = 99.5) -> float:
    """The value a map is stretched to: its ``percentile`` (of a regular subsample of half a
    million pixels or more for bigger maps: the same contrast, a quarter of the time at real
    size), else its maximum, else 1."""
    step = max(1, int(np.sqrt(m.size / 500_000)))
    sample = m[::step, ::step] if m.ndim == 2 else m
    return float(np.percentile(sample, percentile)) or float(m.max()) or 1.0


def parse_color(text: str) -> tuple[float, float, float]:
    t = str(text).strip().lower()
    if t in COLORS:
        return COLORS[t]
    if len(t) == 7 and t.startswith("#"):
        try:
            return tuple(int(t[i : i + 2], 16) / 255 for i in (1, 3, 5))
        except ValueError:
            pass
    raise MaxrfError(f"unknown colour {text!r} (a name: {', '.join(COLORS)}, or #rrggbb)")


def write_composite(elements: list[str], maps: np.ndarray, chosen: list[str], path: Path,
                    colors: list[str] | None = None) -> Path:
    """RGB composite PNG of the ``chosen`` elements."""
    from PIL import Image

    missing = [el for el in chosen if el not in elements]
    if missing:
        raise MaxrfError(f"no map for {', '.join(missing)} (mapped: {', '.join(elements)})")
    img = composite({el: maps[elements.index(el)] for el in chosen}, colors)
    return atomic_write(path, lambda p: Image.fromarray(img).save(p, format="PNG"))


def export_all(datastack: str | Path | DataStack, folder: str | Path, rgb: list[str] | None = None,
               colors: list[str] | None = None, pixel_mm: float | None = None) -> list[Path]:
    """TIFFs, PNGs, the grid and (with ``rgb``) a composite of the datastack's maps; the pixel
    size (``pixel_mm``, else the scan file's) calibrates the TIFFs and draws scale bars."""
    ds = DataStack.of(datastack)
    elements, maps = read_maps(ds)
    folder = Path(folder)
    scan = ds.path.stem
    manifest = folder / MANIFEST
    try:
        before = set(json.loads(manifest.read_text()).get("files", []))
    except (OSError, ValueError, AttributeError):
        before = set()
    pixel_mm = pixel_mm or pixel_size_mm(ds)
    out = (write_tiffs(elements, maps, folder, pixel_mm)
           + write_pngs(elements, maps, folder, scan, pixel_mm))
    if "maxrf_materials" in ds:
        out += write_materials(ds, folder, scan, pixel_mm)
    if rgb:
        out.append(write_composite(elements, maps, rgb, folder / f"rgb_{'-'.join(rgb)}.png",
                                   colors))
    names = sorted(p.name for p in out)
    for stale in before - set(names):  # an earlier export's files of elements no longer mapped
        if "/" not in stale and not stale.startswith("."):
            (folder / stale).unlink(missing_ok=True)
    record = json.dumps({"datastack": str(ds.path), "files": names}, indent=1)
    atomic_write(manifest, lambda tmp: Path(tmp).write_text(record))
    return out


MANIFEST = "maxrf-export.json"  # what the last export wrote here (removed when no longer made)


def export_registered(datastack: str | Path | DataStack, photo: str | Path, folder: Path,
                      opacity: float = 0.6) -> list[Path]:
    """Each element map warped onto the photograph (``EL_on_photo.tif``, 32-bit counts, NaN
    outside the scan), ``overlay.png``: the photo under the suggested composite, and
    ``photo_on_scan.png``: the photo resampled onto the scan's grid (up to 4 samples per scan
    pixel each way)."""
    import tifffile
    from PIL import Image

    from maxrf.imaging.registration import load_photo, photo_on_scan, warp_to_photo

    ds = DataStack.of(datastack)
    if "maxrf_registration" not in ds:
        raise MaxrfError("not registered: run 'maxrf register' first", ds.path)
    matrix = np.array(ds.attrs("maxrf_registration")["matrix"])
    image = load_photo(photo)
    shape = image.shape[:2]
    elements, maps = read_maps(ds)
    out = []
    spread = {}  # each warped map is a photo-sized float32: written, then let go
    for el, m in zip(elements, maps, strict=True):
        warped = warp_to_photo(m, matrix, shape)
        spread[el] = float(np.nanstd(warped))
        out.append(atomic_write(folder / f"{el}_on_photo.tif", lambda t, a=warped, e=el:
                                tifffile.imwrite(t, a, imagej=True,
                                                 metadata={"Labels": [e]})))
    top = sorted(elements, key=lambda el: -spread[el])[:3]
    on_photo = {el: warp_to_photo(maps[elements.index(el)], matrix, shape) for el in top}
    rgb = composite({el: np.nan_to_num(a) for el, a in on_photo.items()})
    inside = ~np.isnan(on_photo[top[0]])[..., None] if top else np.zeros((*shape, 1), bool)
    alpha = float(np.clip(opacity, 0, 1))
    mixed = np.where(inside, (1 - alpha) * image + alpha * rgb, image).astype(np.uint8)
    out.append(atomic_write(folder / "overlay.png",
                            lambda t: Image.fromarray(mixed).save(t, format="PNG")))
    on_scan = photo_on_scan(ds.read("maxrf_registration"), ds.attrs("maxrf_registration"),
                            maps.shape[1:])
    out.append(atomic_write(folder / "photo_on_scan.png",
                            lambda t: Image.fromarray(on_scan).save(t, format="PNG")))
    return out
