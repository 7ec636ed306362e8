"""Flows that chain the tasks: ``convert_scan_flow`` (conversion only) and ``process_scan``."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from maxrf.datastack.layers import DEFAULT_PRECISION_BITS
from tasks.analysis import calibrate_energy, hotmax_noise, hotmax_spectra, hotmax_subpeaks
from tasks.bands import band_layers
from tasks.convert import convert_scan
from tasks.elementmaps import element_maps
from tasks.header import read_header
from tasks.plots import make_plots
from tasks.report import publish_report


def default_output(raw_path: str | Path) -> str:
    return str(Path(raw_path).with_suffix(".datastack"))


@flow(name="convert-scan", log_prints=True)
def convert_scan_flow(
    raw_path: str,
    output: str | None = None,
    sigma: float = 7.0,
    flip_horizontal: bool = False,
    flip_vertical: bool = False,
    precision_bits: int | None = DEFAULT_PRECISION_BITS,
    fingerprint: str = "quick",
    dask_address: str | None = None,
) -> dict:
    """Header check, then the conversion layers (raw, cube, spectra, max pixels)."""
    datastack = output or default_output(raw_path)
    scan = read_header(raw_path, fingerprint)
    converted = convert_scan(
        scan, datastack, sigma, flip_horizontal, flip_vertical, precision_bits, dask_address
    )
    return publish_report(datastack, [converted])


@flow(name="process-scan", log_prints=True)
def process_scan(
    raw_path: str,
    output: str | None = None,
    sigma: float = 7.0,
    anode: str = "Rh",
    flip_horizontal: bool = False,
    flip_vertical: bool = False,
    precision_bits: int | None = DEFAULT_PRECISION_BITS,
    prominence: float | None = None,
    energies: tuple[float, float] | None = None,
    fingerprint: str = "quick",
    dask_address: str | None = None,
    plots: bool = True,
    maps: bool = True,
    tube_kv: float = 50.0,
    elements: list[str] | None = None,
    add_elements: list[str] | None = None,
    drop_elements: list[str] | None = None,
) -> dict:
    """The whole chain for one scan; every step reuses its layers when its key is unchanged.
    ``elements`` (symbols) overrides the automatic choice of elements to map."""
    datastack = output or default_output(raw_path)
    scan = read_header(raw_path, fingerprint)
    converted = convert_scan(
        scan, datastack, sigma, flip_horizontal, flip_vertical, precision_bits, dask_address
    )
    calibrated = calibrate_energy(converted, datastack, anode, energies)
    hot = hotmax_spectra(converted, calibrated, datastack, prominence)
    noise = hotmax_noise(hot, datastack)
    sub = hotmax_subpeaks(noise, datastack)
    done = [converted, calibrated, hot, noise, sub, band_layers(converted, datastack)]
    if maps:
        done.append(
            element_maps(
                converted, calibrated, hot, datastack, anode, tube_kv, elements, add_elements,
                drop_elements, dask_address,
            )
        )
    pngs = make_plots(datastack, done) if plots else []
    return publish_report(datastack, done, pngs)
