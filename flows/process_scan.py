"""Flows that chain the tasks: ``convert_scan_flow`` (conversion only) and ``process_scan``."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from tasks.convert import convert_scan
from tasks.header import read_header
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
    keep_bits: int | None = None,
    fingerprint: str = "quick",
    dask_address: str | None = None,
) -> dict:
    """Header check, then the conversion layers (raw, cube, spectra, max pixels)."""
    datastack = output or default_output(raw_path)
    scan = read_header(raw_path, fingerprint)
    converted = convert_scan(scan, datastack, sigma, flip_horizontal, flip_vertical, keep_bits,
                             dask_address)
    return publish_report(datastack, [converted])
