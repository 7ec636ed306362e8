"""Flow: process every complete new scan of a folder once (each in a ``process-scan`` subflow)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.states import Completed, State

from flows.process_scan import Anode, Fingerprint, process_scan
from maxrf.datastack.lock import file_lock
from maxrf.errors import MaxrfError
from maxrf.scans import LEDGER_NAME, Ledger, survey


def _watch_run_name() -> str:
    from prefect.runtime import flow_run

    return f"watch-scans: {Path(flow_run.parameters.get('folder') or '?').name}"


@flow(name="watch-scans", log_prints=True, flow_run_name=_watch_run_name)
def watch_scans(
    folder: str,
    pattern: str = "*.raw",
    settle_s: float = 10.0,
    output_folder: str | None = None,
    sigma: float = 7.0,
    anode: Anode | float = "Rh",
    fingerprint: Fingerprint = "quick",
) -> State:
    """Find complete scan pairs; process each new one exactly once (its own ``process-scan``
    run); report the others. A poll that finds nothing to do ends in the state "Nothing new".

    A scan still being written (short, or changed within ``settle_s``) waits for the next poll;
    a bad scan is reported (and not retried until its files change) without stopping the others.

    Args:
        folder: The folder the scanner writes .raw/.rpl pairs into.
        pattern: Which files are scans (a glob, e.g. *.raw).
        settle_s: Seconds a scan's files must stay unchanged before it counts as complete.
        output_folder: Where datastacks go (default: beside each scan).
        sigma: Gaussian smoothing of the cube, in channels (maxrf4u uses 7).
        anode: The X-ray tube's anode (Rh, Mo, Ag, W, Cr, Cu), or a monochromatic beam's
            energy in keV.
        fingerprint: How a .raw is identified for caching: quick (size, time, 17 sampled MiB)
            or full (every byte).
    """
    logger = get_run_logger()
    if not str(folder).strip():
        raise MaxrfError("watch-scans: the folder parameter is empty (set MAXRF_SCAN_FOLDER)")
    folder_path = Path(folder)
    statuses = survey(folder_path, pattern, settle_s)
    summary = {"processed": [], "already": [], "waiting": [], "bad": [], "failed": []}
    ledger_path = folder_path / LEDGER_NAME
    with file_lock(folder_path / f"{LEDGER_NAME}.lock", timeout=60, what="watch lock"):
        ledger = Ledger(ledger_path)
        for st in statuses:
            if st.state in ("incomplete", "unsettled"):
                summary["waiting"].append({"raw": st.raw, "reason": st.reason})
                continue
            if st.state == "bad":
                logger.warning("bad scan %s: %s", st.raw, st.reason)
                summary["bad"].append({"raw": st.raw, "reason": st.reason})
                continue
            if st.scan_id in ledger:
                summary["already"].append(st.raw)
                continue
            output = None
            if output_folder:
                output = str(Path(output_folder) / (Path(st.raw).stem + ".datastack"))
            state = process_scan(
                st.raw,
                output=output,
                sigma=sigma,
                anode=anode,
                fingerprint=fingerprint,
                return_state=True,
            )
            if state.is_completed():
                ledger.record(st, "done", datastack=state.result()["datastack"])
                summary["processed"].append(st.raw)
            else:
                reason = str(state.message or state.name)
                ledger.record(st, "failed", reason=reason)
                logger.warning("processing %s failed: %s", st.raw, reason)
                summary["failed"].append({"raw": st.raw, "reason": reason})
    counts = ", ".join(f"{len(summary[k])} {k}" for k in summary)
    logger.info("watch %s: %s", folder, counts)
    if not any(summary[k] for k in ("processed", "bad", "failed")):
        return Completed(name="Nothing new", message=f"{folder}: {counts}", data=summary)
    return Completed(message=f"{folder}: {counts}", data=summary)
