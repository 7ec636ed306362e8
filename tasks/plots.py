"""Task: PNG plots beside the datastack, shown inline in the Prefect UI as image artifacts."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact

from maxrf.figures.plots import plot_all
from maxrf.figures.png import png_data_uri
from maxrf.io.fingerprint import step_key

from .report import artifact_key

PLOTS_VERSION = "2"  # bump when the plots change


@task(name="plots", task_run_name="plots")
def make_plots(datastack: str, after: list[dict] | None = None) -> list[str]:
    """Draw the plots that the layers' keys have not been drawn for yet (a cached run redraws
    nothing) and show each one, embedded, in the run's artifacts."""
    key = step_key("plots", PLOTS_VERSION, {}, [r["key"] for r in after or [] if r])
    paths = plot_all(datastack, key=key)
    for path in paths:
        what = path.name.split(".")[-2]
        create_markdown_artifact(
            f"### {what}: {Path(datastack).name}\n\n"
            f"![{what} plot]({png_data_uri(path)})\n\n`{path.resolve()}`",
            key=artifact_key(datastack, f"plot-{what}"),
            description=f"{what} plot (the PNG beside the datastack)",
        )
    return [str(p) for p in paths]
