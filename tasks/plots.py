"""Task: PNG plots beside the datastack, shown as link artifacts in the Prefect UI."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_link_artifact

from maxrf.plots import plot_all

from .report import artifact_key


@task(name="plots", task_run_name="plots")
def make_plots(datastack: str, after: list[dict] | None = None) -> list[str]:
    """Regenerate the plots (cheap) and link each one from the run's artifacts."""
    paths = plot_all(datastack)
    for path in paths:
        what = path.name.split(".")[-2]
        create_link_artifact(
            path.resolve().as_uri(),
            link_text=path.name,
            key=artifact_key(datastack, f"plot-{what}"),
            description=f"{what} plot (PNG beside the datastack)",
        )
    return [str(p) for p in paths]
