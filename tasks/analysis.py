"""Tasks: calibration, hotmax pixels/spectra, hotmax noise and sub-peaks (one step each)."""

from __future__ import annotations

from maxrf.pipeline.table import default

from .layer_cache import run_step, step_task


@step_task("calibrate")
def calibrate_energy(
    converted: dict,
    datastack: str,
    anode: str = default("anode"),
    energies: tuple[float, float] | None = default("energies"),
    use_header: bool = default("use_header"),
    tube_kv: float | None = default("tube_kv"),
):
    """``maxrf_energies`` + ``compton_peak_energy`` from the mean spectrum's landmarks."""
    return run_step("calibrate", dict(locals()))


@step_task("hotmax")
def hotmax_spectra(
    converted: dict,
    calibrated: dict,
    datastack: str,
    prominence: float | None = default("prominence"),
):
    """Hotmax pixels, spots, spectra, peak lists and the peak table."""
    return run_step("hotmax", dict(locals()))


@step_task("hotmax-noise")
def hotmax_noise(hot: dict, datastack: str, radius: int = default("radius")):
    """Rolling-ball baselines and Poisson noise lines of the hotmax spectra."""
    return run_step("hotmax-noise", dict(locals()))


@step_task("subpeaks")
def hotmax_subpeaks(noise: dict, datastack: str):
    """Sub-peaks above the noise line of every hotmax spectrum."""
    return run_step("subpeaks", dict(locals()))
