"""Flows that chain the tasks: ``convert_scan_flow`` (conversion only) and ``process_scan``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect import flow

from maxrf.pipeline.table import (
    CONVERTING,
    FINGERPRINTS,
    PARAMS,
    PROCESSING,
    default,
    documented,
)
from maxrf.pipeline.tube import tube_voltage
from maxrf.xrf.defaults import ANODES
from tasks.analysis import calibrate_energy, hotmax_noise, hotmax_spectra, hotmax_subpeaks
from tasks.bands import band_layers
from tasks.convert import convert_scan
from tasks.elementmaps import element_maps
from tasks.header import check_parameters, read_header
from tasks.livetime import live_time
from tasks.materials import materials_map
from tasks.plots import make_plots
from tasks.registration import register_photo
from tasks.report import publish_report

Anode = Literal[ANODES]  # a drop-down in the run form
Fingerprint = Literal[FINGERPRINTS]
Model = Literal[PARAMS["registration_model"].choices]


def default_output(raw_path: str | Path) -> str:
    return str(Path(raw_path).with_suffix(".datastack"))


def _run_name(flow_name: str):
    """Run names that show the scan in the Runs list: ``process-scan: painting1``."""

    def name() -> str:
        from prefect.runtime import flow_run

        raw = flow_run.parameters.get("raw_path", "")
        return f"{flow_name}: {Path(raw).stem}" if raw else flow_name

    return name


CONVERT_PARAMS = ("raw_path", "output", *CONVERTING)
SCIENCE_FIRST = ("anode", "tube_kv", "elements", "add_elements", "drop_elements", "materials",
                 "photo", "photo_points", "refine_points", "registration_model", "maps", "plots",
                 "energies", "use_header", "pulser_hz", "dwell_ms")
PROCESS_PARAMS = ("raw_path", *SCIENCE_FIRST,
                  *(p for p in PROCESSING if p not in SCIENCE_FIRST), "output")


@flow(name="convert-scan", log_prints=True, flow_run_name=_run_name("convert-scan"))
@documented("Header check, then the conversion layers (raw, cube, spectra, max pixels).",
            CONVERT_PARAMS)
def convert_scan_flow(
    raw_path: str,
    output: str | None = default("output"),
    sigma: float = default("sigma"),
    flip_horizontal: bool = default("flip_horizontal"),
    flip_vertical: bool = default("flip_vertical"),
    precision_bits: int | None = default("precision_bits"),
    fingerprint: Fingerprint = default("fingerprint"),
    dask_address: str | None = default("dask_address"),
) -> dict:
    datastack = output or default_output(raw_path)
    check_parameters(sigma=sigma, precision_bits=precision_bits, fingerprint=fingerprint)
    scan = read_header(raw_path, fingerprint)
    converted = convert_scan(
        scan, datastack, sigma, flip_horizontal, flip_vertical, precision_bits, dask_address
    )
    return publish_report(datastack, [converted])


@flow(name="process-scan", log_prints=True, flow_run_name=_run_name("process-scan"))
@documented("The whole chain for one scan (maxrf.pipeline.STEPS); every step reuses its layers "
            "when its key is unchanged.", PROCESS_PARAMS)
def process_scan(  # the run form's order: the scan and the science first, plumbing last
    raw_path: str,
    anode: Anode | float = default("anode"),
    tube_kv: float | None = default("tube_kv"),
    elements: list[str] | None = default("elements"),
    add_elements: list[str] | None = default("add_elements"),
    drop_elements: list[str] | None = default("drop_elements"),
    materials: int | None = default("materials"),
    photo: str | None = default("photo"),
    photo_points: str | None = default("photo_points"),
    refine_points: bool = default("refine_points"),
    registration_model: Model | None = default("registration_model"),
    maps: bool = default("maps"),
    plots: bool = default("plots"),
    energies: tuple[float, float] | None = default("energies"),
    use_header: bool = default("use_header"),
    pulser_hz: float | None = default("pulser_hz"),
    dwell_ms: float | None = default("dwell_ms"),
    prominence: float | None = default("prominence"),
    radius: int = default("radius"),
    sigma: float = default("sigma"),
    precision_bits: int | None = default("precision_bits"),
    flip_horizontal: bool = default("flip_horizontal"),
    flip_vertical: bool = default("flip_vertical"),
    output: str | None = default("output"),
    fingerprint: Fingerprint = default("fingerprint"),
    dask_address: str | None = default("dask_address"),
) -> dict:
    given = dict(locals())
    datastack = output or default_output(raw_path)
    check_parameters(**{name: given[name] for name in PROCESSING})
    scan = read_header(raw_path, fingerprint)
    tube_kv = tube_voltage(tube_kv, scan["metadata"])  # empty: the one the file records
    converted = convert_scan(
        scan, datastack, sigma, flip_horizontal, flip_vertical, precision_bits, dask_address
    )
    calibrated = calibrate_energy(converted, datastack, anode, energies, use_header, tube_kv)
    hot = hotmax_spectra(converted, calibrated, datastack, prominence)
    noise = hotmax_noise(hot, datastack, radius)
    sub = hotmax_subpeaks(noise, datastack)
    banded = band_layers(converted, datastack)
    done = [converted, calibrated, hot, noise, sub, banded]
    if pulser_hz:
        done.append(live_time(calibrated, banded, datastack, pulser_hz, dwell_ms))
    if maps:
        mapped = element_maps(
            converted, calibrated, hot, datastack, anode, tube_kv, elements, add_elements,
            drop_elements, dask_address,
        )
        done += [mapped, materials_map(mapped, datastack, materials)]
        if photo:
            done.append(register_photo(mapped, datastack, photo, photo_points, refine_points,
                                       registration_model))
    pngs = make_plots(datastack, done) if plots else []
    return publish_report(datastack, done, pngs)
