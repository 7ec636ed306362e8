"""What the viewer shows, computed from a datastack: every function takes query parameters as
strings, checks them (``ViewerError`` → HTTP 400) and returns JSON-able data or images."""

from __future__ import annotations

import functools
import io
import os
import threading
from pathlib import Path

import numpy as np

from maxrf.datastack import DataStack
from maxrf.errors import MaxrfError
from maxrf.figures.mapexport import composite, parse_color
from maxrf.pipeline.bands import BandReader
from maxrf.xrf.model import Instrument, element_family_lines


class ViewerError(MaxrfError):
    """A request the viewer cannot answer (bad or missing parameter)."""


def _number(params: dict, name: str, kind=float, default=None):
    if name not in params:
        if default is not None:
            return default
        raise ViewerError(f"missing parameter {name!r}")
    try:
        value = kind(params[name])
    except (TypeError, ValueError):
        raise ViewerError(f"parameter {name!r} must be a number, got {params[name]!r}") from None
    if kind is float and not np.isfinite(value):
        raise ViewerError(f"parameter {name!r} must be finite, got {params[name]!r}")
    return value


@functools.cache
def _colormap() -> np.ndarray:
    """The server-side maps' palette (inferno), made on first use: importing matplotlib costs
    0.3-0.4 s, and the page colours the maps it shows itself."""
    from matplotlib import colormaps

    return (colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def png(image: np.ndarray, palette: np.ndarray | None = None) -> bytes:
    """PNG bytes of an RGB (h × w × 3 uint8) image, or of palette indices (h × w uint8) with a
    256 × 3 ``palette`` (a third of the bytes to compress); fast zlib level."""
    from PIL import Image

    img = Image.fromarray(image)
    if palette is not None:
        img = img.convert("P") if img.mode != "L" else img
        img.putpalette(palette.ravel().tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@functools.cache
def _prewarm() -> None:
    """Import, in a background thread, what the first spectrum and mean-spectrum requests need
    (the fit's modules, scipy's filters: ~0.4 s), once the page has asked for its first answer:
    kept out of the server's start, and out of the first click."""

    def work() -> None:
        from scipy.ndimage import gaussian_filter1d  # noqa: F401

        from maxrf.pipeline.elementmaps import fit_spectrum_with  # noqa: F401

    threading.Thread(target=work, name="maxrf-viewer-prewarm", daemon=True).start()


class ViewerData:
    """The datastack behind one viewer (thread-safe; layers read lazily and kept small)."""

    def __init__(self, datastack: str | Path, pixel_size_mm: float | None = None) -> None:
        self.path = Path(datastack)
        self.pixel_size_option = pixel_size_mm
        self._lock = threading.Lock()
        self._stamp = self._file_stamp()
        self._load()

    def _file_stamp(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def refresh(self) -> bool:
        """Reopen the layers when the datastack changed since they were read (a refit, a
        calibration committed while the viewer runs); True when it did. One stat per call."""
        try:
            stamp = self._file_stamp()
        except OSError:
            return False
        if stamp == self._stamp:
            return False
        with self._lock:
            if stamp != self._stamp:
                self._load()
                self._stamp = stamp
        return True

    def _load(self) -> None:
        """Open the layers shown (the latest version of each); empties the caches."""
        self.ds = DataStack(self.path)
        self.reader = BandReader(self.path)
        self.energies = (self.ds.read("maxrf_energies") if "maxrf_energies" in self.ds
                         else np.arange(self.reader.channels, dtype=np.float64))
        self.calibrated = "maxrf_energies" in self.ds
        self.cube = self.ds.array("maxrf_cube") if "maxrf_cube" in self.ds else None
        self.sigma = float(self.ds.attrs("maxrf_cube").get("maxrf", {}).get("params", {})
                           .get("sigma", 7.0)) if self.cube is not None else 0.0
        self.elements: list[str] = []
        self.model = None
        if "maxrf_elementmaps" in self.ds:
            self.elements = list(self.ds.attrs("maxrf_elementmaps")["elements"])
            self.maps = self.ds.array("maxrf_elementmaps")
            if "maxrf_elementmaps_model" in self.ds:
                self.model = self.ds.read("maxrf_elementmaps_model")
        self.spots = (self.ds.read("hotmax_spots").tolist() if "hotmax_spots" in self.ds
                      else [])
        self._cache: dict = {}

    # ---- JSON ------------------------------------------------------------------------------
    def info(self) -> dict:
        r = self.reader
        out = {
            "datastack": str(self.path),
            "height": r.height,
            "width": r.width,
            "channels": r.channels,
            "energy_kev": [float(self.energies[0]), float(self.energies[-1])],
            "calibrated": self.calibrated,
            "layers": self.ds.layers,
            "elements": self.elements,
            "suggested": self.suggested(),
            "hotmax_spots": self.spots,
            "lines": {el: self.lines(el) for el in self.elements},
            "pixel_size_mm": self.pixel_size_mm(),
            "band_edges_kev": self.band_edges_kev(),
            "fit_range_kev": (self.ds.attrs("maxrf_elementmaps").get("fit_range_kev")
                              if self.elements else None),
            "map_units": "counts per pixel",
            "materials": self.materials_info(),
            "photo": self.photo_info(),
            "quality": [k for k, (layer, _d) in self.QUALITY.items() if layer in self.ds],
        }
        _prewarm()  # after the answer is made: it must not slow the page's first request
        return out

    def band_edges_kev(self) -> list[float] | None:
        """Where a band image's edges can fall (the band layers' group boundaries, each the
        lower edge of its channel; the last past the last channel), or None: anywhere."""
        r = self.reader
        if r.exact:
            return None
        e = self.energies
        step = float(e[-1] - e[-2]) if len(e) > 1 else 1.0
        edges = [float(e[k]) for k in range(0, r.channels, r.group)] + [float(e[-1]) + step]
        return [round(x - 1e-6, 6) for x in edges]  # just below: searchsorted finds the channel

    def pixel_size_mm(self) -> float | None:
        """The scan's pixel size: ``maxrf view --pixel-size-mm``, else what its file said."""
        from maxrf.exports.tiff import pixel_size_mm

        return float(self.pixel_size_option) if self.pixel_size_option else pixel_size_mm(self.ds)

    def suggested(self, n: int = 3) -> list[str]:
        """The maps with the most structure (spread × strength, of a subsample): a first
        composite worth looking at."""
        key = ("suggested",)
        if not self.elements:  # no element maps yet (a datastack just converted)
            return []
        if key not in self._cache:
            step = max(1, int(np.sqrt(self.reader.height * self.reader.width / 250_000)))
            every = np.asarray(self.maps[:, ::step, ::step], dtype=np.float64)  # one read
            score = {}
            for el, m in zip(self.elements, every, strict=True):
                score[el] = float(m.std()) * np.sqrt(max(float(m.mean()), 0.0))
            self._cache[key] = sorted(score, key=lambda el: -score[el])[:n]
        return self._cache[key]

    def lines(self, element: str, top: int = 6) -> list[list]:
        """The strongest lines of ``element`` on this axis: [[keV, relative, name], …]."""
        fams = element_family_lines(element, Instrument(), float(self.energies[-1]))
        lines = sorted((x for f in fams.values() for x in f), key=lambda x: -x.intensity)[:top]
        if not lines:
            return []
        peak = lines[0].intensity
        return [[round(x.energy_kev, 4), round(x.intensity / peak, 3), x.name] for x in lines]

    def _pixel(self, params: dict) -> tuple[int, int]:
        row, col = _number(params, "row", int), _number(params, "col", int)
        if not (0 <= row < self.reader.height and 0 <= col < self.reader.width):
            raise ViewerError(
                f"pixel ({row}, {col}) is outside the scan "
                f"({self.reader.height} rows x {self.reader.width} columns)"
            )
        return row, col

    def spectrum(self, params: dict) -> dict:
        row, col = self._pixel(params)
        counts = self.reader.spectrum(row, col).astype(np.float64)
        out = {"row": row, "col": col, "energy_kev": self.energies.tolist(),
               "counts": counts.tolist()}
        if self.cube is not None:
            out["smoothed"] = np.asarray(self.cube[row, col, :], dtype=np.float64).tolist()
        if self.model is not None:
            from maxrf.pipeline.elementmaps import fit_spectrum_with  # on first use: the fit's
            # modules (scipy's optimisers) cost the viewer's start 0.3 s
            amps, fitted = fit_spectrum_with(self.model, counts)
            out["fit"] = fitted.tolist()
            out["fit_counts"] = dict(zip(self.elements, amps[: len(self.elements)].tolist(),
                                         strict=True))
            out["parts"] = self._parts(amps, 1.0)
        return out

    def _parts(self, amps: np.ndarray, scale: float) -> dict:
        """Each mapped element's share of the fit (its amplitude × its template), over the
        channels where it is not negligible: ``{el: {"start": channel, "values": [...]}}``."""
        out = {}
        for i, el in enumerate(self.elements):
            if amps[i] <= 0:
                continue
            curve = amps[i] * self.model[i].astype(np.float64) / scale
            where = np.flatnonzero(curve > 1e-3 * curve.max())
            if where.size:
                a, b = int(where[0]), int(where[-1]) + 1
                out[el] = {"start": a, "values": np.round(curve[a:b], 4).tolist()}
        return out

    QUALITY = {"residual": ("maxrf_elementmaps_residual", "reduced χ² of the pixel's fit"),
               "background": ("maxrf_elementmaps_background",
                              "counts of scatter and continuum per pixel")}

    def quality(self, params: dict) -> np.ndarray:
        """The fit's own maps: ``residual`` (reduced χ² per pixel), ``background`` (scatter and
        continuum counts) or ``sigma:El`` (one standard deviation of El's map, counts)."""
        what = str(params.get("what", ""))
        if what.startswith("sigma:"):
            sym = what[6:].strip().capitalize()
            if sym not in self.elements or "maxrf_elementmaps_sigma" not in self.ds:
                raise ViewerError(f"no uncertainty map for {sym!r}")
            return np.asarray(self.ds.array("maxrf_elementmaps_sigma")[self.elements.index(sym)])
        if what not in self.QUALITY or self.QUALITY[what][0] not in self.ds:
            raise ViewerError(f"unknown fit map {what!r} (residual, background, sigma:El)")
        return np.asarray(self.ds.array(self.QUALITY[what][0])[...])

    def photo_info(self) -> dict | None:
        """The registered photograph (name, model, residual), or None when not registered."""
        if "maxrf_registration" not in self.ds:
            return None
        a = self.ds.attrs("maxrf_registration")
        quality = (f"control points, residual {a['residual_px']['rms']:.2f} px"
                   if "residual_px" in a else
                   f"automatic, correlation {a.get('correlation', float('nan')):.2f}")
        return {"name": a["photo"]["name"], "model": a["model"], "quality": quality,
                "residual_px": a["residual_px"]["rms"] if "residual_px" in a else None,
                "factor": self._photo_factor()}

    def _photo_factor(self) -> int:
        from maxrf.imaging.registration import photo_factor

        return photo_factor((self.reader.height, self.reader.width))

    def photo_on_scan(self) -> np.ndarray:
        """The registered photograph resampled onto the scan's grid (``factor`` samples per
        scan pixel each way), from the stored preview: RGB uint8."""
        from maxrf.imaging.registration import photo_on_scan

        if "maxrf_registration" not in self.ds:
            raise ViewerError("no photograph: run 'maxrf register' first")
        key = ("photo",)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        attrs = self.ds.attrs("maxrf_registration")
        hit = photo_on_scan(self.ds.read("maxrf_registration"), attrs,
                            (self.reader.height, self.reader.width), self._photo_factor())
        with self._lock:
            self._cache[key] = hit
        return hit

    def materials_info(self) -> list[dict] | None:
        """Each material's area and main elements (None when there is no materials map)."""
        if "maxrf_materials" not in self.ds:
            return None
        attrs = self.ds.attrs("maxrf_materials")
        return [{"pixels": int(px), "top": top}
                for px, top in zip(attrs["pixels"], attrs["main_elements"], strict=True)]

    def materials(self) -> np.ndarray:
        if "maxrf_materials" not in self.ds:
            raise ViewerError("no materials map: run 'maxrf materials' first")
        return np.asarray(self.ds.read("maxrf_materials"), dtype=np.float32)

    def material_spectrum(self, params: dict) -> dict:
        m = _number(params, "m", int)
        if "maxrf_materials_spectra" not in self.ds:
            raise ViewerError("no materials map: run 'maxrf materials' first")
        spectra = self.ds.array("maxrf_materials_spectra")
        if not 0 <= m < spectra.shape[0]:
            raise ViewerError(f"no material {m} (materials 0 to {spectra.shape[0] - 1})")
        pixels = self.ds.attrs("maxrf_materials")["pixels"][m]
        return {"material": m, "pixels": int(pixels), "energy_kev": self.energies.tolist(),
                "counts": np.asarray(spectra[m], dtype=np.float64).tolist()}

    def lines_near(self, params: dict) -> dict:
        """What a peak at ``kev`` may be: every candidate element's lines within one detector
        resolution, nearest and strongest first, with whether the element is mapped."""
        from maxrf.xrf.hotmax import candidate_lines

        kev = _number(params, "kev")
        width = float(Instrument().fwhm_kev(max(kev, 1.0)))
        names = candidate_lines(kev, tolerance_kev=width, top=8)
        return {"kev": kev, "width_kev": width,
                "candidates": [{"line": n, "element": n.split()[0],
                                "mapped": n.split()[0] in self.elements} for n in names]}

    def map_params(self) -> dict:
        """The parameters the shown element maps were fitted with."""
        if "maxrf_elementmaps" not in self.ds:
            return {}
        return dict(self.ds.attrs("maxrf_elementmaps").get("maxrf", {}).get("params", {}))

    def _rect(self, params: dict) -> tuple[int, int, int, int]:
        r0, r1 = _number(params, "r0", int), _number(params, "r1", int)
        c0, c1 = _number(params, "c0", int), _number(params, "c1", int)
        h, w = self.reader.height, self.reader.width
        if not (0 <= r0 < r1 <= h and 0 <= c0 < c1 <= w):
            raise ViewerError(
                f"rectangle rows [{r0}, {r1}) x columns [{c0}, {c1}) must be non-empty and "
                f"inside {h} x {w} (half-open ranges)"
            )
        return r0, r1, c0, c1

    def mean_spectrum(self, params: dict) -> dict:
        r0, r1, c0, c1 = self._rect(params)
        n = (r1 - r0) * (c1 - c0)
        total = self.reader.rect_sum(r0, r1, c0, c1)
        out = {"r0": r0, "r1": r1, "c0": c0, "c1": c1, "pixels": n,
               "energy_kev": self.energies.tolist(), "counts": (total / n).tolist()}
        if self.sigma > 0:
            from scipy.ndimage import gaussian_filter1d

            out["smoothed"] = gaussian_filter1d(total / n, self.sigma, mode="reflect",
                                                truncate=4.0).tolist()
        if self.model is not None:
            from maxrf.pipeline.elementmaps import fit_spectrum_with

            amps, fitted = fit_spectrum_with(self.model, total)
            out["fit"] = (fitted / n).tolist()
            out["parts"] = self._parts(amps, float(n))
        return out

    # ---- images ----------------------------------------------------------------------------
    def _band_channels(self, params: dict) -> tuple[int, int, float, float]:
        lo_kev, hi_kev = _number(params, "lo_kev"), _number(params, "hi_kev")
        if not lo_kev < hi_kev:
            raise ViewerError(f"lo_kev ({lo_kev}) must be below hi_kev ({hi_kev})")
        e = self.energies
        lo, hi = int(np.searchsorted(e, lo_kev, "left")), int(np.searchsorted(e, hi_kev, "left"))
        return lo, hi, lo_kev, hi_kev

    def band(self, params: dict) -> np.ndarray:
        """Raw counts summed over the channels whose energy lies in [lo_kev, hi_kev)."""
        lo, hi, *_ = self._band_channels(params)
        key = ("band", lo, hi)
        with self._lock:
            hit = self._cache.get(key)
        if hit is None:
            hit = self.reader.band(lo, hi)
            with self._lock:
                self._cache = {k: v for k, v in self._cache.items() if k[0] != "band"}
                self._cache[key] = hit
        return hit

    def total(self) -> np.ndarray:
        return self.band({"lo_kev": "-1e9", "hi_kev": "1e9"})

    def element_map(self, element: str) -> np.ndarray:
        sym = element.strip().capitalize()
        if sym not in self.elements:
            raise ViewerError(
                f"no map for element {element!r} (mapped: {', '.join(self.elements) or 'none'})"
            )
        key = ("map", sym)
        with self._lock:
            hit = self._cache.get(key)
        if hit is None:
            hit = np.asarray(self.maps[self.elements.index(sym)])
            with self._lock:
                self._cache[key] = hit
        return hit

    def colorize(self, image: np.ndarray, params: dict) -> bytes:
        """PNG of values through the inferno colour map, 0 to ``vmax`` (default: 99.5th pct)."""
        image = np.asarray(image, dtype=np.float32)
        if "vmax" in params:
            top = _number(params, "vmax")
        else:
            top = float(np.percentile(image[:: max(1, image.size // 200_000)], 99.5))
        top = top if top > 0 else float(image.max()) or 1.0
        idx = np.clip(image * (255.0 / top), 0, 255).astype(np.uint8)
        return png(idx, _colormap())

    def composite_image(self, params: dict) -> np.ndarray:
        names = [e for e in str(params.get("elements", "")).split(",") if e.strip()]
        if not 1 <= len(names) <= 4:
            raise ViewerError(f"composite needs 1 to 4 elements, got {len(names)}")
        colors = [c for c in str(params.get("colors", "")).split(",") if c.strip()] or None
        if colors:
            for c in colors:
                parse_color(c)
        maps = {n: self.element_map(n) for n in names}
        gains = [_number({"gains": x}, "gains")
                 for x in str(params.get("gains", "")).split(",") if x.strip()] or None
        try:
            return composite(maps, colors, gains=gains)
        except MaxrfError as exc:
            raise ViewerError(exc.reason) from None
