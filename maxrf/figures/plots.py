"""PNG plots beside the datastack: calibration, max/mean spectra, hotmax atlas (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from maxrf.datastack import DataStack
from maxrf.figures.mapexport import plot_grid
from maxrf.figures.png import png_key, pyplot, save_png
from maxrf.xrf.hotmax import candidate_lines


def _floor(*spectra: np.ndarray) -> float:
    """A log-scale floor: the smallest positive value shown (empty channels are clipped to it)."""
    pos = np.concatenate([s[s > 0] for s in spectra])
    return float(max(pos.min(), pos.max() * 1e-6)) if pos.size else 1e-3


def _energies(ds: DataStack, n: int) -> tuple[np.ndarray, str]:
    if "maxrf_energies" in ds:
        return ds.read("maxrf_energies"), "energy (keV)"
    return np.arange(n, dtype=float), "channel"


def plot_calibration(ds: DataStack, out: Path, key: str | None = None) -> Path:
    """Mean spectrum on the fitted axis with every landmark annotated, and the residuals."""
    plt = pyplot()
    used = "maxrf_rawmeanspectrum" if "maxrf_rawmeanspectrum" in ds else "maxrf_sumspectrum"
    mean = ds.read(used)
    e = ds.read("maxrf_energies")
    cal = ds.attrs("maxrf_energies").get("calibration", {})
    fig, (ax, axr) = plt.subplots(2, 1, figsize=(11, 6.5), height_ratios=(3, 1), sharex=True)
    floor = _floor(mean)
    ax.semilogy(e, np.maximum(mean, floor), lw=0.8, color="k")
    for lm in cal.get("landmarks", []):
        x = lm["energy_kev"]
        ax.axvline(x, color="tab:red", lw=0.5, alpha=0.6)
        ax.annotate(
            lm["name"],
            (x, ax.get_ylim()[1]),
            rotation=90,
            fontsize=7,
            va="top",
            ha="right",
            color="tab:red",
        )
        axr.plot(x, lm["residual_ev"], "o", color="tab:red")
    if cal.get("compton_kev"):
        ax.axvline(cal["compton_kev"], color="tab:blue", ls="--", lw=0.8)
        ax.annotate(
            f"Compton {cal['compton_kev']:.2f} keV ({cal['scatter_angle_deg']:.0f}°)",
            (cal["compton_kev"], ax.get_ylim()[0] * 3),
            rotation=90,
            fontsize=7,
            color="tab:blue",
            ha="right",
        )
    ax.set_ylabel("mean counts / channel")
    ax.set_title(
        f"Energy calibration: {cal.get('offset_kev', 0):+.4f} keV + "
        f"{cal.get('gain_kev', 0) * 1000:.4f} eV/ch, rms "
        f"{cal.get('rms_residual_ev', 0):.1f} eV ({cal.get('method', '')})",
        fontsize=9,
    )
    axr.axhline(0, color="k", lw=0.5)
    axr.set_ylabel("residual (eV)")
    axr.set_xlabel("energy (keV)")
    return save_png(fig, out, key=key)


def plot_spectra(ds: DataStack, out: Path, key: str | None = None) -> Path:
    """Max and mean spectra on a log scale."""
    plt = pyplot()
    mx, mean = ds.read("maxrf_maxspectrum"), ds.read("maxrf_sumspectrum")
    e, label = _energies(ds, mx.size)
    fig, ax = plt.subplots(figsize=(11, 4.5))
    floor = _floor(mx, mean)
    ax.semilogy(e, np.maximum(mx, floor), lw=0.8, label="max spectrum")
    ax.semilogy(e, np.maximum(mean, floor), lw=0.8, label="mean spectrum")
    ax.set_xlabel(label)
    ax.set_ylabel("counts / channel")
    ax.legend()
    ax.set_title(ds.path.name)
    return save_png(fig, out, key=key)


def plot_hotmax_atlas(
    ds: DataStack, out: Path, max_panels: int = 24, key: str | None = None
) -> Path:
    """One panel per hotmax spot: spectrum, baseline, noise envelope, sub-peaks with labels."""
    plt = pyplot()
    spectra = ds.read("hotmax_spectra")
    spots = ds.read("hotmax_spots")
    e, label = _energies(ds, spectra.shape[1])
    has_energy = label != "channel"
    base = ds.read("hotmax_baselines") if "hotmax_baselines" in ds else None
    noise = ds.read("hotmax_noiselines") if "hotmax_noiselines" in ds else None
    subs = ds.read_list("hotmax_subpeak_idxs_list") if "hotmax_subpeak_idxs_list" in ds else None
    peaks = ds.read_list("hotmax_peak_idxs_list")
    n = min(len(spectra), max_panels)
    cols = 3
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 2.6 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        s = spectra[i]
        ax.plot(e, s, lw=0.7, color="k")
        if noise is not None:
            ax.fill_between(e, base[i], noise[i], color="tab:orange", alpha=0.35, lw=0)
        if subs is not None and len(subs[i]):
            ax.plot(e[subs[i]], s[subs[i]], ".", color="tab:blue", ms=3)
        for p in peaks[i]:
            text = ", ".join(candidate_lines(e[p])[:1]) if has_energy else str(p)
            ax.annotate(
                text or f"{e[p]:.2f}",
                (e[p], s[p]),
                fontsize=7,
                color="tab:red",
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
            )
        ax.set_title(f"spot {i}: row {spots[i][0]}, col {spots[i][1]}", fontsize=8)
        ax.set_ylim(0, s.max() * 1.25 if s.max() > 0 else 1)
        ax.tick_params(labelsize=7)
    fig.supxlabel(label)
    fig.suptitle(f"Hotmax atlas: {ds.path.name}", fontsize=10)
    return save_png(fig, out, key=key)


def plot_all(datastack: str | Path, key: str | None = None) -> list[Path]:
    """Every plot the datastack has the layers for, as PNG files beside it. With ``key`` (what
    the layers are: their steps' keys), a PNG already drawn for that key is kept as it is."""
    ds = DataStack(datastack)
    stem = Path(datastack).with_suffix("")
    made = []

    def draw(path: Path, plot) -> None:
        if key is None or png_key(path) != key:
            plot(path)
        made.append(path)

    if "maxrf_maxspectrum" in ds:
        draw(Path(f"{stem}.spectra.png"), lambda p: plot_spectra(ds, p, key))
    if "maxrf_energies" in ds and ds.attrs("maxrf_energies").get("calibration"):
        draw(Path(f"{stem}.calibration.png"), lambda p: plot_calibration(ds, p, key))
    if "hotmax_spectra" in ds:
        draw(Path(f"{stem}.hotmax.png"), lambda p: plot_hotmax_atlas(ds, p, key=key))
    if "maxrf_elementmaps" in ds:
        elements = list(ds.attrs("maxrf_elementmaps")["elements"])
        draw(
            Path(f"{stem}.elementmaps.png"),
            lambda p: plot_grid(elements, ds.read("maxrf_elementmaps"), p, Path(datastack).stem,
                                key=key),
        )  # fmt: skip
    return made
