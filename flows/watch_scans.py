"""Flow: process every complete new scan of a folder once (each in a ``process-scan`` subflow)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.states import Completed, State

from flows.process_scan import Anode, Fingerprint, Model, process_scan
from maxrf.datastack.lock import file_lock
from maxrf.errors import MaxrfError
from maxrf.io.scans import LEDGER_NAME, Ledger, survey
from maxrf.pipeline.params import check_parameters, checkable
from maxrf.pipeline.table import PROCESSING, default, documented


def _watch_run_name() -> str:
    from prefect.runtime import flow_run

    return f"watch-scans: {Path(flow_run.parameters.get('folder') or '?').name}"


# every processing parameter of process-scan (a watched folder is processed as one scan is)
WATCH_PARAMS = ("folder", "pattern", "settle_s", "output_folder", *PROCESSING)


@flow(name="watch-scans", log_prints=True, flow_run_name=_watch_run_name)
@documented(
    "Find complete scan pairs; process each new one exactly once (its own process-scan run);\n"
    "    report the others. A scan still being written (short, or changed within settle_s) waits\n"
    "    for the next poll; a bad scan is reported without stopping the others (and not retried\n"
    '    until its files change). A poll with nothing to do ends in the state "Nothing new".',
    WATCH_PARAMS,
)
def watch_scans(
    folder: str,
    pattern: str = default("pattern"),
    settle_s: float = default("settle_s"),
    output_folder: str | None = default("output_folder"),
    sigma: float = default("sigma"),
    anode: Anode | float = default("anode"),
    tube_kv: float | None = default("tube_kv"),
    flip_horizontal: bool = default("flip_horizontal"),
    flip_vertical: bool = default("flip_vertical"),
    precision_bits: int | None = default("precision_bits"),
    prominence: float | None = default("prominence"),
    energies: tuple[float, float] | None = default("energies"),
    use_header: bool = default("use_header"),
    radius: int = default("radius"),
    fingerprint: Fingerprint = default("fingerprint"),
    dask_address: str | None = default("dask_address"),
    plots: bool = default("plots"),
    maps: bool = default("maps"),
    elements: list[str] | None = default("elements"),
    add_elements: list[str] | None = default("add_elements"),
    drop_elements: list[str] | None = default("drop_elements"),
    materials: int | None = default("materials"),
    photo: str | None = default("photo"),
    photo_points: str | None = default("photo_points"),
    refine_points: bool = default("refine_points"),
    registration_model: Model | None = default("registration_model"),
    pulser_hz: float | None = default("pulser_hz"),
    dwell_ms: float | None = default("dwell_ms"),
) -> State:
    logger = get_run_logger()
    if not str(folder).strip():
        raise MaxrfError("watch-scans: the folder parameter is empty (set MAXRF_SCAN_FOLDER)")
    settings = dict(locals())
    processing = {name: settings[name] for name in PROCESSING}
    check_parameters(**checkable(processing))  # once, before any scan
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
            state = process_scan(st.raw, output=output, **processing, return_state=True)
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
