"""Checks of a run's parameters, all at once and before any work: a wrong anode must not be
found only after a conversion of many minutes. Raises ``MaxrfError`` naming the parameter."""

from __future__ import annotations

import math

from maxrf.errors import MaxrfError
from maxrf.pipeline.table import FINGERPRINTS, default


def check_parameters(
    sigma: float = default("sigma"),
    anode: str | float = default("anode"),
    tube_kv: float = default("tube_kv"),
    precision_bits: int | None = default("precision_bits"),
    prominence: float | None = None,
    energies: tuple[float, float] | None = None,
    fingerprint: str = default("fingerprint"),
    elements: list[str] | None = None,
    add_elements: list[str] | None = None,
    drop_elements: list[str] | None = None,
    pulser_hz: float | None = None,
    dwell_ms: float | None = None,
) -> None:
    from maxrf.datastack.layers import PRECISION_BITS
    from maxrf.pipeline.convert import MAX_SIGMA
    from maxrf.pipeline.elementmaps import anode_conflict, parse_elements
    from maxrf.xrf.lines import excitation_spectrum

    def fail(name: str, why: str) -> None:
        raise MaxrfError(f"parameter {name}: {why}")

    if not (isinstance(sigma, int | float) and 0 <= sigma <= MAX_SIGMA):
        fail("sigma", f"must be a number from 0 to {MAX_SIGMA:g} channels, got {sigma!r}")
    try:
        excitation_spectrum(anode, float(tube_kv))
    except (TypeError, ValueError) as exc:
        fail("anode/tube_kv", str(exc))
    if precision_bits is not None and (
        isinstance(precision_bits, bool) or precision_bits not in PRECISION_BITS
    ):
        fail("precision_bits", f"must be {PRECISION_BITS[0]}-{PRECISION_BITS[-1]} or None, "
                               f"got {precision_bits!r}")
    if prominence is not None and not (
        isinstance(prominence, int | float) and math.isfinite(prominence) and prominence > 0
    ):
        fail("prominence", f"must be a positive number (counts) or None, got {prominence!r}")
    if energies is not None:
        try:
            start, stop = (float(x) for x in energies)
        except (TypeError, ValueError):
            fail("energies", f"must be two numbers (keV of the first and last channel), got "
                             f"{energies!r}")
        if not (math.isfinite(start) and math.isfinite(stop) and stop > start):
            fail("energies", f"the last channel's energy must exceed the first's, got {energies}")
    for name, value in (("pulser_hz", pulser_hz), ("dwell_ms", dwell_ms)):
        if value is not None and not (isinstance(value, int | float) and math.isfinite(value)
                                      and value > 0):
            fail(name, f"must be a positive number or empty, got {value!r}")
    if fingerprint not in FINGERPRINTS:
        fail("fingerprint", f"must be one of {', '.join(FINGERPRINTS)}, got {fingerprint!r}")
    for name, value in (("elements", elements), ("add_elements", add_elements),
                        ("drop_elements", drop_elements)):
        try:
            parsed = parse_elements(value)
        except MaxrfError as exc:
            fail(name, exc.reason)
        if name != "drop_elements" and (why := anode_conflict(parsed, anode)) is not None:
            fail(name, why)


def checkable(values: dict) -> dict:
    """The entries of ``values`` that :func:`check_parameters` checks (by its signature)."""
    import inspect

    names = inspect.signature(check_parameters).parameters
    return {k: v for k, v in values.items() if k in names}
