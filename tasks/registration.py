"""Task: the scan registered to a photograph of the painting."""

from __future__ import annotations

from maxrf.pipeline.table import default

from .layer_cache import run_step, step_task


@step_task("register")
def register_photo(mapped: dict, datastack: str, photo: str,
                   photo_points: str | None = default("photo_points"),
                   refine_points: bool = default("refine_points"),
                   registration_model: str | None = default("registration_model")):
    """``maxrf_registration``: the scan → photo transform (automatic, or from control points)."""
    return run_step("register", dict(locals()))
