"""Task: read and validate a scan's header and fingerprint its files."""

from __future__ import annotations

from prefect import task

from maxrf.io.raw import open_scan
from maxrf.pipeline.params import check_parameters as _check


@task(name="read-header", task_run_name="read-header")
def read_header(raw_path: str, fingerprint: str = "quick") -> dict:
    """Validate the pair (exact raw size) and return a small scan reference with its key."""
    scan = open_scan(raw_path)
    return {
        "step": "scan",
        "raw": str(scan.raw),
        "rpl": str(scan.rpl),
        "header": scan.header.to_dict(),
        "key": scan.key(fingerprint),
        "metadata": scan.metadata,
    }


@task(name="check-parameters", task_run_name="check-parameters")
def check_parameters(**params) -> None:
    """Every parameter of the run, checked before any work (one-line ``MaxrfError``)."""
    _check(**params)
