"""Task: read and validate a scan's header and fingerprint its files."""

from __future__ import annotations

from prefect import task

from maxrf.fingerprint import scan_fingerprint
from maxrf.raw import check_raw_size, scan_paths
from maxrf.rpl import read_rpl


@task(name="read-header")
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
