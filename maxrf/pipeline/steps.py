"""Datastack-level analysis steps: read their input layers, compute, append their output layers
(with provenance) in one commit. The conversion step is ``maxrf.pipeline.convert.convert``."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from maxrf.datastack import DataStack
from maxrf.errors import MaxrfError
from maxrf.io.atomic import atomic_write
from maxrf.io.rpl import EnergyCalibration
from maxrf.pipeline.table import default, step
from maxrf.xrf import calibrate as cal_mod
from maxrf.xrf import hotmax as hm
from maxrf.xrf.defaults import DEFAULT_TUBE_KV


def _meta(step: str, version: str, params: dict, provenance: dict | None, started: float) -> dict:
    meta = {"step": step, "code_version": version, "params": params}
    meta.update(provenance or {})
    meta["duration_s"] = round(time.time() - started, 3)
    return {"maxrf": meta}


def _header_calibration(ds: DataStack) -> EnergyCalibration | None:
    energy = ds.attrs("maxrf_cube").get("source", {}).get("header", {}).get("energy")
    return EnergyCalibration(energy["offset_kev"], energy["gain_kev"]) if energy else None


def calibrate_layers(
    datastack: str | Path,
    anode: str | float = default("anode"),
    energies: tuple[float, float] | None = None,
    use_header: bool = True,
    provenance: dict | None = None,
    tube_kv: float = DEFAULT_TUBE_KV,
) -> dict[str, str]:
    """Write ``maxrf_energies`` (with the full calibration in its attributes) and
    ``compton_peak_energy``. ``energies=(start, stop)`` overrides the automatic calibration;
    ``tube_kv`` sets which of the tube's lines scatter (and so which landmarks exist)."""
    started = time.time()
    ds = DataStack.of(datastack)
    if "maxrf_rawmeanspectrum" in ds:  # unsmoothed: sharper landmarks (≤ 3 eV even at 1024 ch)
        mean, sigma = ds.read("maxrf_rawmeanspectrum"), 0.0
    else:  # a datastack from elsewhere: the smoothed mean spectrum
        mean = ds.read("maxrf_sumspectrum")
        sigma = ds.attrs("maxrf_cube").get("maxrf", {}).get("params", {}).get("sigma", 7.0)
    if energies is not None:
        cal = cal_mod.manual_calibration(mean.size, str(anode), energies=energies,
                                         tube_kv=float(tube_kv))
    else:
        header = _header_calibration(ds) if use_header else None
        try:
            h, w = ds.array("maxrf_cube").shape[:2]
            cal = cal_mod.calibrate(mean, anode=anode, header=header, smoothing_sigma=sigma,
                                    counts_scale=float(h * w), tube_kv=float(tube_kv))
        except MaxrfError as exc:
            raise type(exc)(exc.reason, ds.path) from None
    params = {"anode": str(anode), "energies": energies, "use_header": use_header,
              "tube_kv": float(tube_kv)}
    attrs = _meta("calibrate", step("calibrate").version, params, provenance, started)
    compton = np.float64(np.nan if cal.compton_kev is None else cal.compton_kev)
    with ds.appending() as app:
        app.write(
            "maxrf_energies", cal.energies(), attrs={"calibration": cal.attrs(), "units": "keV"}
        )
        app.write("compton_peak_energy", np.asarray(compton), attrs={"units": "keV"})
        for name in app.writers:
            app.finish(name, attrs)
    return app.committed


def hotmax_layers(
    datastack: str | Path, prominence: float | None = None, provenance: dict | None = None
) -> dict[str, str]:
    """Peaks of the max spectrum, their pixels and spots, the spectra there and a peak table
    (also written as CSV beside the datastack)."""
    started = time.time()
    ds = DataStack.of(datastack)
    maxspec = ds.read("maxrf_maxspectrum")
    try:
        hot = hm.find_hotmax_pixels(maxspec, ds.read("maxrf_maxpixels"), prominence)
    except MaxrfError as exc:
        raise type(exc)(exc.reason, ds.path) from None
    cube = ds.array("maxrf_cube")
    spectra = np.array([cube[r, c, :] for r, c in hot.spots.tolist()], dtype=np.float32)
    energies = ds.read("maxrf_energies") if "maxrf_energies" in ds else None
    table = hm.peak_table(hot, maxspec, energies)
    csv = ds.path.with_suffix(".hotmax_peaks.csv")
    atomic_write(csv, lambda tmp: table.to_csv(tmp, index=False))
    numeric = table[["channel", "energy_kev", "height", "row", "col", "spot"]].to_numpy(float)
    params = {"prominence": prominence}
    attrs = _meta("hotmax", step("hotmax").version, params, provenance, started)
    with ds.appending() as app:
        app.write("hotmax_pixels", hot.pixels, attrs={"columns": ["row", "col", "channel"]})
        app.write("hotmax_spots", hot.spots, attrs={"columns": ["row", "col"]})
        app.write("hotmax_spectra", spectra)
        app.write_list("hotmax_peak_idxs_list", hot.peak_idxs)
        app.write(
            "hotmax_peak_table",
            numeric.reshape(-1, 6),
            attrs={
                "columns": ["channel", "energy_kev", "height", "row", "col", "spot"],
                "candidates": table["candidates"].tolist(),
                "csv": csv.name,
            },
        )
        for name in app.writers:
            app.finish(name, attrs)
    return app.committed


def noise_layers(
    datastack: str | Path, radius: int = 40, provenance: dict | None = None
) -> dict[str, str]:
    """Rolling-ball baselines and Poisson noise lines of the hotmax spectra."""
    started = time.time()
    ds = DataStack.of(datastack)
    base, noise = hm.baselines_and_noise(ds.read("hotmax_spectra"), radius)
    attrs = _meta(
        "hotmax-noise",
        step("hotmax-noise").version,
        {"radius": radius, "alpha": hm.NOISE_ALPHA, "beta": hm.NOISE_BETA},
        provenance,
        started,
    )
    with ds.appending() as app:
        app.write("hotmax_baselines", base.astype(np.float32))
        app.write("hotmax_noiselines", noise.astype(np.float32))
        for name in app.writers:
            app.finish(name, attrs)
    return app.committed


def subpeak_layers(datastack: str | Path, provenance: dict | None = None) -> dict[str, str]:
    """Sub-peaks of each hotmax spectrum above its noise line."""
    started = time.time()
    ds = DataStack.of(datastack)
    peaks = hm.subpeaks(ds.read("hotmax_spectra"), ds.read("hotmax_noiselines"))
    attrs = _meta("subpeaks", step("subpeaks").version, {}, provenance, started)
    with ds.appending() as app:
        app.write_list("hotmax_subpeak_idxs_list", peaks)
        app.finish("hotmax_subpeak_idxs_list", attrs)
    return app.committed


def elementmap_layers(
    datastack: str | Path,
    anode: str | float = default("anode"),
    tube_kv: float = DEFAULT_TUBE_KV,
    elements: list[str] | None = None,
    add_elements: list[str] | None = None,
    drop_elements: list[str] | None = None,
    scheduler=None,
    progress: bool | None = None,
    provenance: dict | None = None,
) -> dict[str, str]:
    """Per-pixel element maps (fitted counts), their atomic numbers, the reduced χ² and the
    background counts; also under maxrf4u's names ``nmf_elementmaps`` / ``nmf_atomnums``."""
    from maxrf.pipeline import elementmaps as em

    started = time.time()
    mm = em.prepare(datastack, anode, tube_kv, elements, add_elements, drop_elements)
    result = em.fit_maps(datastack, mm, scheduler=scheduler, progress=progress)
    params = {"anode": str(anode), "tube_kv": float(tube_kv), "elements": elements,
              "add_elements": add_elements, "drop_elements": drop_elements}
    attrs = _meta("element-maps", step("element-maps").version, params, provenance, started)
    attrs["maxrf"]["spectra_per_s"] = round(result.spectra_per_s)
    z = em.atomnums(mm.elements)
    info = mm.attrs()
    ds = DataStack.of(datastack)
    with ds.appending() as app:
        n, h, w = result.maps.shape
        plane = (1, min(h, 512), min(w, 512))  # one element's map reads its own chunks only
        app.write("maxrf_elementmaps", result.maps, attrs=info, chunks=plane)
        app.write("maxrf_elementmaps_atomnums", z, attrs={"elements": mm.elements})
        app.write("maxrf_elementmaps_residual", result.residual,
                  attrs={"statistic": "reduced chi-square per pixel"})
        app.write("maxrf_elementmaps_sigma", result.sigma, chunks=plane,
                  attrs={"units": "counts per pixel, one standard deviation (Poisson)",
                         "elements": mm.elements})
        app.write("maxrf_elementmaps_background", result.background,
                  attrs={"units": "counts of scatter and continuum per pixel"})
        app.write("maxrf_elementmaps_model", em.model_layer(mm),
                  attrs={"components": mm.model.names, "kinds": mm.model.kinds,
                         "rows": "components, then the fit weights"})
        app.write("nmf_elementmaps", result.maps, attrs={"elements": mm.elements}, chunks=plane)
        app.write("nmf_atomnums", z)
        for name in app.writers:
            app.finish(name, attrs)
    return app.committed
