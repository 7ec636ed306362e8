"""Command-line options made from the pipeline table: one ``--option`` per parameter, with its
description, type, default and choices (``--no-x`` for what is on by default)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

from maxrf.pipeline.table import PARAMS, Param


def param_help(p: Param) -> str:
    """A parameter's description, argparse-safe."""
    return p.description.replace("%", "%%")


def _bounded(p: Param, cast):
    from maxrf.pipeline.params import number_ok, rule

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or not number_ok(p, value):
            raise argparse.ArgumentTypeError(f"{rule(p)}, got {text!r}")
        return value

    return parse


def add_option(parser: argparse.ArgumentParser, name: str) -> None:
    """The option of parameter ``name`` (its value lands in ``args.<name>``)."""
    p = PARAMS[name]
    kw: dict[str, Any] = {"dest": name, "help": param_help(p)}
    if p.kind == "bool":
        if p.default:  # the option turns it off
            kw["help"] = "do not " + kw["help"][0].lower() + kw["help"][1:]
            parser.add_argument("--no-" + p.flag.removeprefix("--"), action="store_false", **kw)
        else:
            parser.add_argument(p.flag, action="store_true", **kw)
        return
    kw["default"] = p.default
    if p.default is not None:
        kw["help"] += f" (default {p.default})"
    if p.metavar:
        kw["metavar"] = p.metavar
    if p.kind in ("float", "int"):
        kw["type"] = _bounded(p, float if p.kind == "float" else int) if p.bounds else (
            float if p.kind == "float" else int)
    elif p.kind == "choice":
        kw["choices"] = p.choices
    elif p.kind == "energies":
        kw.update(type=float, nargs=2)
    if name == "precision_bits":  # its empty value has an option of its own
        group = parser.add_mutually_exclusive_group()
        group.add_argument(p.flag, **kw)
        group.add_argument("--lossless", dest=name, action="store_const", const=None,
                           default=p.default,
                           help="store the smoothed cube exactly (larger file, slower)")
        return
    parser.add_argument(p.flag, **kw)


def add_options(parser: argparse.ArgumentParser, names: Iterable[str]) -> None:
    for name in names:
        if PARAMS[name].cli != "":
            add_option(parser, name)


def values(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The parameters' values as the flows and the runner take them (element lists parsed, an
    anode given as a number made a beam energy, energies a tuple)."""
    from maxrf.pipeline.elementmaps import parse_elements

    out: dict[str, Any] = {}
    for name in names:
        if not hasattr(args, name):
            continue
        value = getattr(args, name)
        kind = PARAMS[name].kind
        if kind == "elements":
            value = parse_elements(value)
        elif kind == "anode":
            value = anode_value(value)
        elif kind == "energies" and value is not None:
            value = tuple(value)
        out[name] = value
    return out


def anode_value(text: str | float) -> str | float:
    """``"16"`` → 16.0 (a monochromatic beam, keV); ``"rh"`` → ``"Rh"``."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return str(text).strip().capitalize()
