"""Task: publish what a run produced as Prefect artifacts (datastack tree, steps, timings)."""

from __future__ import annotations

import re
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from maxrf.datastack import DataStack


def artifact_key(datastack: str, what: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    stem = re.sub(r"[^a-z0-9]+", "-", Path(datastack).stem.lower()).strip("-") or "scan"
    return f"{stem}-{what}"[:100]


def layer_table(ds: DataStack) -> list[dict]:
    rows = []
    for name in ds.layers:
        arr = ds.array(name, latest=False)
        meta = arr.attrs.get("maxrf", {})
        rows.append({
            "layer": name,
            "shape": "x".join(map(str, arr.shape)),
            "dtype": str(arr.dtype),
            "step": meta.get("step", ""),
            "duration_s": meta.get("duration_s", ""),
            "cache_key": meta.get("cache_key", ""),
        })
    return rows


@task(name="report")
def publish_report(datastack: str, steps: list[dict], extra_markdown: str = "") -> dict:
    """Artifacts: the datastack tree and the steps (cached or computed); returns a summary."""
    ds = DataStack(datastack)
    tree = ds.tree()
    create_table_artifact(layer_table(ds), key=artifact_key(datastack, "layers"),
                          description=f"Layers of {datastack}")
    step_rows = [{"step": s["step"], "cached": s.get("cached", False), "key": s["key"],
                  "layers": ", ".join(s["layers"].values())} for s in steps]
    create_table_artifact(step_rows, key=artifact_key(datastack, "steps"),
                          description="Steps of this run (cached = reused from the datastack)")
    md = f"# {Path(datastack).name}\n\n```\n{tree}\n```\n{extra_markdown}"
    create_markdown_artifact(md, key=artifact_key(datastack, "summary"),
                             description="maxrf datastack summary")
    return {"datastack": str(datastack), "tree": tree, "steps": step_rows,
            "layers": ds.layers}
