"""Checks of a run's parameters, all at once and before any work: a wrong anode must not be
found only after a conversion of many minutes. Kinds, bounds and choices come from the pipeline
table (:data:`maxrf.pipeline.table.PARAMS`); what needs physics (anode and voltage, element
symbols) is checked by the physics. Raises ``MaxrfError`` naming the parameter."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from maxrf.errors import MaxrfError
from maxrf.pipeline.table import PARAMS, Param


def _fail(name: str, why: str) -> None:
    raise MaxrfError(f"parameter {name}: {why}")


def rule(p: Param) -> str:
    """What a number parameter must be, in words: ``must be a number from 0 to 200 channels``."""
    integer = p.kind == "int"
    noun = "integer" if integer else "number"
    lo, hi = p.bounds or (-math.inf, math.inf)
    unit = f" {p.unit}" if p.unit else ""
    if 0 < lo < 1e-6 and math.isinf(hi):
        return f"must be a positive {noun}{unit and ' (' + p.unit + ')'}"
    if math.isinf(hi) and math.isinf(lo):
        return f"must be a{'n' if integer else ''} {noun}"
    if math.isinf(hi):
        return f"must be a {noun} >= {lo:g}{unit}"
    return f"must be a{'n' if integer else ''} {noun} from {lo:g} to {hi:g}{unit}"


def number_ok(p: Param, value: Any) -> bool:
    """Whether ``value`` is a finite number (an integer for int parameters) within bounds."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and p.kind == "int":
        ok = float(value).is_integer()
    lo, hi = p.bounds or (-math.inf, math.inf)
    return ok and lo <= value <= hi


def _number(p: Param, value: Any) -> None:
    if not number_ok(p, value):
        _fail(p.name, f"{rule(p)}{' or empty' if p.optional else ''}, got {value!r}")


def check_value(name: str, value: Any) -> None:
    """One parameter against its kind, bounds and choices in the table."""
    p = PARAMS.get(name)
    if p is None:
        raise MaxrfError(f"unknown parameter {name!r} (parameters: {', '.join(PARAMS)})")
    if value is None:
        if p.optional or p.default is None:
            return
        _fail(name, "must not be empty")
    if p.kind in ("float", "int"):
        _number(p, value)
    elif p.kind == "bool" and not isinstance(value, bool):
        _fail(name, f"must be true or false, got {value!r}")
    elif p.kind == "file" and not Path(value).is_file():
        _fail(name, f"no such file: {value}")
    elif p.kind == "choice" and value not in p.choices:
        _fail(name, f"must be one of {', '.join(p.choices)}, got {value!r}")
    elif p.kind == "energies":
        try:
            start, stop = (float(x) for x in value)
        except (TypeError, ValueError):
            _fail(name, f"must be two numbers (keV of the first and last channel), got "
                        f"{value!r}")
        if not (math.isfinite(start) and math.isfinite(stop) and stop > start):
            _fail(name, f"the last channel's energy must exceed the first's, got {value}")


def check_parameters(**values: Any) -> None:
    """Every given parameter checked (unknown names included), then what needs physics: the
    anode with the tube voltage, element symbols and elements the anode's lines would hide."""
    from maxrf.pipeline.elementmaps import anode_conflict, parse_elements
    from maxrf.pipeline.tube import tube_voltage
    from maxrf.xrf.lines import excitation_spectrum

    for name, value in values.items():
        if name in ("anode", "tube_kv"):
            continue  # which tubes, beams and voltages are possible: the physics says
        check_value(name, value)
    anode = values.get("anode", PARAMS["anode"].default)
    if "anode" in values or "tube_kv" in values:
        try:
            excitation_spectrum(anode, float(tube_voltage(values.get("tube_kv"))))
        except (TypeError, ValueError) as exc:
            _fail("anode/tube_kv", str(exc))
    for name in ("elements", "add_elements", "drop_elements"):
        if name not in values:
            continue
        try:
            parsed = parse_elements(values[name])
        except MaxrfError as exc:
            _fail(name, exc.reason)
        if name != "drop_elements" and (why := anode_conflict(parsed, anode)) is not None:
            _fail(name, why)


def checkable(values: dict) -> dict:
    """The entries of ``values`` that are parameters of the table."""
    return {k: v for k, v in values.items() if k in PARAMS}
