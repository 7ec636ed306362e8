"""Task: read and validate a scan's header and fingerprint its files."""

from __future__ import annotations

from prefect import task

from maxrf.fingerprint import scan_fingerprint
from maxrf.params import check_parameters as _check
from maxrf.raw import check_raw_size, scan_paths
from maxrf.rpl import read_rpl


@task(name="read-header", task_run_name="read-header")
def read_header(raw_path: str, fingerprint: str = "quick") -> dict:
    """Validate the pair (exact raw size) and return a small scan reference with its key."""
    raw, rpl = scan_paths(raw_path)
    header = read_rpl(rpl)
    check_raw_size(header, raw)
    return {
        "step": "scan",
        "raw": str(raw),
        "rpl": str(rpl),
        "header": header.to_dict(),
        "key": "scan-" + scan_fingerprint(raw, rpl, fingerprint),
    }


@task(name="check-parameters", task_run_name="check-parameters")
def check_parameters(**params) -> None:
    """Every parameter of the run, checked before any work (one-line ``MaxrfError``)."""
    _check(**params)
