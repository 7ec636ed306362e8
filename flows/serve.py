"""The no-worker path: serve the same deployments as prefect.yaml from one process."""

from __future__ import annotations

from prefect import serve

from flows.process_scan import process_scan
from flows.watch_scans import watch_scans


def deployments(folder: str, interval: float):
    """``process-scan`` (parameters editable in the UI) and ``watch-scans`` on an interval."""
    return [
        process_scan.to_deployment(name="process-scan", tags=["maxrf"]),
        watch_scans.to_deployment(
            name="watch-scans",
            interval=interval,
            parameters={"folder": folder},
            tags=["maxrf"],
            concurrency_limit=1,
        ),
    ]


def serve_deployments(folder: str = "scans", interval: float = 60.0) -> None:
    """Run until interrupted; stopping does not pause the schedules."""
    serve(*deployments(folder, interval), pause_on_shutdown=False)
