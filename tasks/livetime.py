"""Task: live time (and dead time) per pixel from the zero-peak pulser."""

from __future__ import annotations

from maxrf import livetime

from .layer_cache import StepSpec, run_step, step_task

LIVETIME = StepSpec.of("livetime")


@step_task(LIVETIME)
def live_time(calibrated: dict, banded: dict, datastack: str, pulser_hz: float,
              dwell_ms: float | None = None):
    """``maxrf_livetime`` (s per pixel) and ``maxrf_deadtime`` from the pulser's zero peak."""
    inputs = dict(locals())
    return run_step(
        LIVETIME, inputs, datastack,
        lambda prov: livetime.livetime_layers(datastack, pulser_hz, dwell_ms, provenance=prov),
    )
