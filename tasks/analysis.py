"""Tasks: calibration, hotmax pixels/spectra, hotmax noise and sub-peaks (one step each)."""

from __future__ import annotations

from maxrf import steps
from maxrf.pipeline import default

from .layer_cache import StepSpec, run_step, step_task

CALIBRATE = StepSpec.of("calibrate")
HOTMAX = StepSpec.of("hotmax")
NOISE = StepSpec.of("hotmax-noise")
SUBPEAKS = StepSpec.of("subpeaks")


@step_task(CALIBRATE)
def calibrate_energy(
    converted: dict,
    datastack: str,
    anode: str = default("anode"),
    energies: tuple[float, float] | None = default("energies"),
    use_header: bool = default("use_header"),
    tube_kv: float = default("tube_kv"),
):
    """``maxrf_energies`` + ``compton_peak_energy`` from the mean spectrum's landmarks."""
    inputs = dict(locals())
    return run_step(
        CALIBRATE,
        inputs,
        datastack,
        lambda prov: steps.calibrate_layers(
            datastack, anode, energies, use_header, provenance=prov, tube_kv=tube_kv
        ),
    )


@step_task(HOTMAX)
def hotmax_spectra(
    converted: dict,
    calibrated: dict,
    datastack: str,
    prominence: float | None = default("prominence"),
):
    """Hotmax pixels, spots, spectra, peak lists and the peak table."""
    inputs = dict(locals())
    return run_step(
        HOTMAX,
        inputs,
        datastack,
        lambda prov: steps.hotmax_layers(datastack, prominence, provenance=prov),
    )


@step_task(NOISE)
def hotmax_noise(hot: dict, datastack: str, radius: int = default("radius")):
    """Rolling-ball baselines and Poisson noise lines of the hotmax spectra."""
    inputs = dict(locals())
    return run_step(
        NOISE,
        inputs,
        datastack,
        lambda prov: steps.noise_layers(datastack, radius, provenance=prov),
    )


@step_task(SUBPEAKS)
def hotmax_subpeaks(noise: dict, datastack: str):
    """Sub-peaks above the noise line of every hotmax spectrum."""
    inputs = dict(locals())
    return run_step(
        SUBPEAKS, inputs, datastack, lambda prov: steps.subpeak_layers(datastack, provenance=prov)
    )
