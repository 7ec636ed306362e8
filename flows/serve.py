"""The no-worker path: serve the same deployments as prefect.yaml from one process."""

from __future__ import annotations

from prefect import get_client, serve
from prefect.exceptions import ObjectNotFound

from flows.form import form_schema
from flows.process_scan import process_scan
from flows.watch_scans import watch_scans

NAMES = ("process-scan/process-scan", "watch-scans/watch-scans")


def deployments(folder: str, interval: float):
    """``process-scan`` (parameters editable in the UI) and ``watch-scans`` on an interval,
    their run forms without a "None" switch per optional parameter (:mod:`flows.form`)."""
    made = [
        process_scan.to_deployment(name="process-scan", tags=["maxrf"]),
        watch_scans.to_deployment(
            name="watch-scans",
            interval=interval,
            parameters={"folder": folder},
            tags=["maxrf"],
            concurrency_limit=1,
        ),
    ]
    for dep in made:
        schema = dep._parameter_openapi_schema
        dep._parameter_openapi_schema = type(schema)(**form_schema(schema.model_dump()))
    return made


def release_worker_deployments() -> list[str]:
    """Delete same-named deployments made by ``prefect deploy`` for a work pool: their pull
    steps would otherwise be used for the served runs (which then cannot find their code)."""
    released = []
    with get_client(sync_client=True) as client:
        for name in NAMES:
            try:
                dep = client.read_deployment_by_name(name)
            except ObjectNotFound:
                continue
            if dep.work_pool_name:
                client.delete_deployment(dep.id)
                released.append(name)
    return released


def serve_deployments(folder: str = "scans", interval: float = 60.0) -> None:
    """Run until interrupted; stopping does not pause the schedules."""
    for name in release_worker_deployments():
        print(f"replacing work-pool deployment {name} with a served one")
    serve(*deployments(folder, interval), pause_on_shutdown=False)
