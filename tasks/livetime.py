"""Task: live time (and dead time) per pixel from the zero-peak pulser."""

from __future__ import annotations

from .layer_cache import run_step, step_task


@step_task("livetime")
def live_time(calibrated: dict, banded: dict, datastack: str, pulser_hz: float,
              dwell_ms: float | None = None):
    """``maxrf_livetime`` (s per pixel) and ``maxrf_deadtime`` from the pulser's zero peak."""
    return run_step("livetime", dict(locals()))
