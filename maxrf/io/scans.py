"""Finding complete scans in a folder, and the ledger of scans already processed.

A scan is complete when its header parses, the ``.raw`` has exactly the size the header promises
and neither file changed for ``settle_s`` seconds: a scan still being written is shorter (or
still changing) and is left for the next look.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from maxrf.errors import MaxrfError
from maxrf.io.atomic import atomic_write
from maxrf.io.raw import check_raw_size, scan_paths
from maxrf.io.rpl import read_rpl

LEDGER_NAME = ".maxrf-processed.json"


@dataclass
class ScanStatus:
    raw: str
    state: str  # complete | incomplete | unsettled | bad
    reason: str = ""
    scan_id: str = ""


def scan_id(raw: Path, rpl: Path) -> str:
    """Identity of one version of a scan: its quick fingerprint (size, time, header and 17
    sampled MiB of content; not its name). New content under an old name is a new scan; a
    renamed scan is the one already processed."""
    from maxrf.io.fingerprint import scan_fingerprint

    return "scan-" + scan_fingerprint(raw, rpl, "quick")


ZERO_TAIL_PATIENCE_S = 600.0  # a full-size .raw whose end is still empty: waited for this long


def _unfilled(raw: Path, header) -> str:
    """Why a ``.raw`` of the right size may still be being filled (a scanner that preallocates
    the file): most of it unallocated (sparse), or its last pixel's spectrum all zeros."""
    st = raw.stat()
    if st.st_size > 1 << 20 and st.st_blocks * 512 < 0.5 * st.st_size:
        return "most of the file is not written yet (sparse, preallocated)"
    if header.record_by == "vector":
        record = header.depth * header.data_length
        with open(raw, "rb") as f:
            f.seek(max(0, st.st_size - record))
            if not any(f.read(record)):
                return "its last pixel is still zeros (a preallocated file being filled?)"
    return ""


def survey(folder: str | Path, pattern: str = "*.raw", settle_s: float = 10.0) -> list[ScanStatus]:
    """The status of every ``.raw`` matching ``pattern`` in ``folder`` (not recursive)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MaxrfError("scan folder not found (or not a folder)", folder)
    out = []
    now = time.time()
    for raw in sorted(p for p in folder.glob(pattern) if p.is_file()):
        try:
            raw, rpl = scan_paths(raw)
            header = read_rpl(rpl)
        except MaxrfError as exc:
            out.append(ScanStatus(str(raw), "bad", exc.reason))
            continue
        actual = raw.stat().st_size
        if actual < header.raw_bytes_expected:
            out.append(
                ScanStatus(str(raw), "incomplete", f"{actual} of {header.raw_bytes_expected} bytes")
            )
            continue
        try:
            check_raw_size(header, raw)
        except MaxrfError as exc:
            out.append(ScanStatus(str(raw), "bad", exc.reason))
            continue
        newest = max(raw.stat().st_mtime, rpl.stat().st_mtime)
        if now - newest < settle_s:
            out.append(ScanStatus(str(raw), "unsettled", f"changed {now - newest:.0f} s ago"))
            continue
        unfilled = _unfilled(raw, header)
        if unfilled and now - newest < max(ZERO_TAIL_PATIENCE_S, 10 * settle_s):
            out.append(ScanStatus(str(raw), "incomplete", unfilled))
            continue
        out.append(ScanStatus(str(raw), "complete", "", scan_id(raw, rpl)))
    raws = {Path(st.raw).with_suffix("").name for st in out}
    for rpl in sorted(p for p in folder.iterdir() if p.suffix.lower() == ".rpl"):
        if rpl.with_suffix("").name not in raws and not rpl.with_suffix(".raw").exists():
            out.append(ScanStatus(str(rpl), "incomplete", "a header without its .raw (yet)"))
    return out


class Ledger:
    """``{scan_id: {"state": "done"|"failed", ...}}`` kept in a JSON file, replaced atomically."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.entries: dict[str, dict] = json.loads(self.path.read_text())
        except FileNotFoundError:
            self.entries = {}
        except ValueError as exc:
            raise MaxrfError(f"ledger is not valid JSON ({exc}); move it away", self.path) from None

    def __contains__(self, sid: str) -> bool:
        return sid in self.entries

    def record(self, status: ScanStatus, state: str, **info) -> None:
        self.entries[status.scan_id] = {
            "raw": status.raw,
            "state": state,
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **info,
        }
        text = json.dumps(self.entries, indent=1)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text))
