"""Event-driven watching: announce each complete new scan as a Prefect event.

A ``process-scan`` deployment with a trigger on :data:`EVENT` (``process-scan-on-event`` in
``prefect.yaml``) then gets exactly one run per scan, and the Runs list holds no polls at all.
Looking at the folder costs a few ``stat`` calls and happens here, outside Prefect. Events sent
while the server is down are lost, so a scan is marked announced only after the server took it.
"""

from __future__ import annotations

from pathlib import Path

from prefect.events import emit_event

from maxrf.datastack.lock import file_lock
from maxrf.errors import MaxrfError
from maxrf.io.scans import LEDGER_NAME, Ledger, ScanStatus, survey

EVENT = "maxrf.scan.complete"
RESOURCE_PREFIX = "maxrf.scan."


def scan_event_resource(st: ScanStatus) -> dict[str, str]:
    """The event's resource: one id per scan version (its fingerprint), named by its file."""
    return {
        "prefect.resource.id": RESOURCE_PREFIX + st.scan_id,
        "prefect.resource.name": Path(st.raw).name,
        "maxrf.io.raw": st.raw,
    }


def _flush_events() -> None:
    """Wait until queued events are sent (they go out from a background worker)."""
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=30)


def announce_new_scans(folder: str | Path, pattern: str = "*.raw", settle_s: float = 10.0) -> dict:
    """Emit :data:`EVENT` once for every complete scan of ``folder`` not yet in its ledger.

    Returns ``{"announced": [...], "waiting": [...], "bad": [...]}`` (paths and reasons).
    """
    from prefect.settings import PREFECT_API_URL

    from flows.server import healthy

    api = PREFECT_API_URL.value()
    if not api or not healthy(api, 2.0):
        raise MaxrfError(f"no Prefect server answers at {api or '(PREFECT_API_URL unset)'}")
    folder = Path(folder)
    summary: dict[str, list] = {"announced": [], "waiting": [], "bad": []}
    statuses = survey(folder, pattern, settle_s)
    with file_lock(folder / f"{LEDGER_NAME}.lock", timeout=60, what="watch lock"):
        ledger = Ledger(folder / LEDGER_NAME)
        new = []
        for st in statuses:
            if st.state == "complete" and st.scan_id not in ledger:
                new.append(st)
            elif st.state in ("incomplete", "unsettled"):
                summary["waiting"].append({"raw": st.raw, "reason": st.reason})
            elif st.state == "bad":
                summary["bad"].append({"raw": st.raw, "reason": st.reason})
        for st in new:
            emit_event(
                event=EVENT,
                resource=scan_event_resource(st),
                payload={"raw_path": st.raw, "scan_id": st.scan_id},
            )
        if new:
            _flush_events()
            if not healthy(api, 2.0):  # it went away meanwhile: announce again next time
                raise MaxrfError(f"the Prefect server at {api} stopped answering")
        for st in new:
            ledger.record(st, "announced", event=EVENT)
            summary["announced"].append(st.raw)
    return summary

