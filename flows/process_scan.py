"""Flows that chain the tasks: ``convert_scan_flow`` (conversion only) and ``process_scan``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from flows.server import use_server_before_prefect

use_server_before_prefect()  # a plain Python call of a flow uses the CLI's shared server

from prefect import flow  # noqa: E402

from maxrf.datastack.layers import DEFAULT_PRECISION_BITS  # noqa: E402
from tasks.analysis import calibrate_energy, hotmax_noise, hotmax_spectra, hotmax_subpeaks  # noqa: E402
from tasks.bands import band_layers  # noqa: E402
from tasks.convert import convert_scan  # noqa: E402
from tasks.elementmaps import element_maps  # noqa: E402
from tasks.header import check_parameters, read_header  # noqa: E402
from tasks.plots import make_plots  # noqa: E402
from tasks.report import publish_report  # noqa: E402

Anode = Literal["Rh", "Mo", "Ag", "W", "Cr", "Cu"]
Fingerprint = Literal["quick", "full"]


def default_output(raw_path: str | Path) -> str:
    return str(Path(raw_path).with_suffix(".datastack"))


def _run_name(flow_name: str):
    """Run names that show the scan in the Runs list: ``process-scan: painting1``."""

    def name() -> str:
        from prefect.runtime import flow_run

        raw = flow_run.parameters.get("raw_path", "")
        return f"{flow_name}: {Path(raw).stem}" if raw else flow_name

    return name


@flow(name="convert-scan", log_prints=True, flow_run_name=_run_name("convert-scan"))
def convert_scan_flow(
    raw_path: str,
    output: str | None = None,
    sigma: float = 7.0,
    flip_horizontal: bool = False,
    flip_vertical: bool = False,
    precision_bits: int | None = DEFAULT_PRECISION_BITS,
    fingerprint: Fingerprint = "quick",
    dask_address: str | None = None,
) -> dict:
    """Header check, then the conversion layers (raw, cube, spectra, max pixels).

    Args:
        raw_path: The scan's .raw file (its .rpl header beside it).
        output: The datastack file to write (default: SCAN.datastack beside the .raw).
        sigma: Gaussian smoothing of the cube, in channels (maxrf4u uses 7).
        flip_horizontal: Mirror the image left-right (scan direction).
        flip_vertical: Mirror the image top-bottom.
        precision_bits: Bits kept per smoothed spectrum (1-24; error <= 2**-(N+1) of its peak);
            empty for an exact (lossless, larger) cube.
        fingerprint: How the .raw is identified for caching: quick (size, time, 17 sampled MiB)
            or full (every byte; for files edited in place).
        dask_address: A dask.distributed scheduler (host:port) to run on; empty for local threads.
    """
    datastack = output or default_output(raw_path)
    check_parameters(sigma=sigma, precision_bits=precision_bits, fingerprint=fingerprint)
    scan = read_header(raw_path, fingerprint)
    converted = convert_scan(
        scan, datastack, sigma, flip_horizontal, flip_vertical, precision_bits, dask_address
    )
    return publish_report(datastack, [converted])


@flow(name="process-scan", log_prints=True, flow_run_name=_run_name("process-scan"))
def process_scan(
    raw_path: str,
    output: str | None = None,
    sigma: float = 7.0,
    anode: Anode | float = "Rh",
    flip_horizontal: bool = False,
    flip_vertical: bool = False,
    precision_bits: int | None = DEFAULT_PRECISION_BITS,
    prominence: float | None = None,
    energies: tuple[float, float] | None = None,
    fingerprint: Fingerprint = "quick",
    dask_address: str | None = None,
    plots: bool = True,
    maps: bool = True,
    tube_kv: float = 50.0,
    elements: list[str] | None = None,
    add_elements: list[str] | None = None,
    drop_elements: list[str] | None = None,
) -> dict:
    """The whole chain for one scan; every step reuses its layers when its key is unchanged.

    Args:
        raw_path: The scan's .raw file (its .rpl header beside it).
        output: The datastack file to write (default: SCAN.datastack beside the .raw).
        sigma: Gaussian smoothing of the cube, in channels (maxrf4u uses 7).
        anode: The X-ray tube's anode (Rh, Mo, Ag, W, Cr, Cu), or a monochromatic beam's
            energy in keV.
        flip_horizontal: Mirror the image left-right (scan direction).
        flip_vertical: Mirror the image top-bottom.
        precision_bits: Bits kept per smoothed spectrum (1-24; error <= 2**-(N+1) of its peak);
            empty for an exact (lossless, larger) cube.
        prominence: Minimum prominence (counts) of a max-spectrum peak for hotmax; empty: chosen
            from the noise.
        energies: Manual calibration: keV of the first and the last channel; empty: automatic.
        fingerprint: How the .raw is identified for caching: quick (size, time, 17 sampled MiB)
            or full (every byte; for files edited in place).
        dask_address: A dask.distributed scheduler (host:port) to run on; empty for local threads.
        plots: Draw the PNG plots beside the datastack.
        maps: Fit the element maps (the last step).
        tube_kv: The tube's voltage in kV (sets which lines are excited and how strongly).
        elements: Elements to map, e.g. ["Pb", "Hg", "As"]; empty: proposed from the data.
        add_elements: Elements to map besides the proposed ones.
        drop_elements: Elements never to map.
    """
    datastack = output or default_output(raw_path)
    check_parameters(
        sigma=sigma, anode=anode, tube_kv=tube_kv, precision_bits=precision_bits,
        prominence=prominence, energies=energies, fingerprint=fingerprint, elements=elements,
        add_elements=add_elements, drop_elements=drop_elements,
    )
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
