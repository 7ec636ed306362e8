"""Arguments of the orchestrated commands (``process``, ``convert``, ``watch``, ``serve``,
``demo``). Their handlers live in ``flows.commands`` and import Prefect only when they run."""

from __future__ import annotations

import argparse

from maxrf.cli.options import add_options, param_help
from maxrf.pipeline.table import CONVERTING, PARAMS, PROCESSING, default

WATCHING = ("pattern", "settle_s", "output_folder")


def _help(name: str) -> str:
    """A parameter's description from the pipeline table (argparse-safe)."""
    return param_help(PARAMS[name])


def _scan_options(p: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    p.add_argument("scan", help="SCAN.raw (its .rpl header beside it)")
    p.add_argument("-o", "--output", help=_help("output"))
    add_options(p, names)
    p.add_argument(
        "--rerun",
        action="store_true",
        help="run the flow even when every layer is cached (records a Prefect run)",
    )


def add_commands(sub, flows_command) -> None:
    p = sub.add_parser("process", help="run the whole chain on a scan (Prefect flow)")
    _scan_options(p, PROCESSING)
    p.set_defaults(func=flows_command("process"))

    p = sub.add_parser("convert", help="convert a scan: raw, cube, spectra (Prefect flow)")
    _scan_options(p, CONVERTING)
    p.set_defaults(func=flows_command("convert"))

    p = sub.add_parser("watch", help="process every complete new scan of a folder")
    p.add_argument("folder")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between looks")
    add_options(p, (*WATCHING, *PROCESSING))
    p.add_argument("--once", action="store_true", help="look once and exit")
    p.add_argument(
        "--events", action="store_true",
        help="only announce each complete new scan as a Prefect event (maxrf.scan.complete) for "
        "an event-triggered process-scan deployment; no flow runs here",
    )  # fmt: skip
    p.set_defaults(func=flows_command("watch"))

    p = sub.add_parser("serve", help="serve the deployments without a worker (prefect serve)")
    p.add_argument("--folder", default="scans", help="scan folder for watch-scans")
    p.add_argument("--interval", type=float, default=60.0, help="watch-scans interval, s")
    p.set_defaults(func=flows_command("serve"))

    p = sub.add_parser(
        "deploy",
        help="deploy prefect.yaml's deployments to a work pool (checks the scan folder first)",
    )
    p.add_argument("--folder", help="scan folder watch-scans polls (default $MAXRF_SCAN_FOLDER)")
    p.add_argument("--pool", default="maxrf", help="process work pool (created when missing)")
    p.set_defaults(func=flows_command("deploy"))

    p = sub.add_parser(
        "server",
        help="the local Prefect server the commands share (started on first use)",
        description="status: is it running, where (exit 3 when not); start; stop.",
    )
    p.add_argument("action", choices=["status", "start", "stop"], nargs="?", default="status")
    p.set_defaults(func=flows_command("server"))

    p = sub.add_parser("demo", help="generate a demo scan and run the whole chain on it")
    p.add_argument("folder", nargs="?", default="demo-output")
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--width", type=int, default=160)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--paints", type=int, default=6, help="how many paints the painting has")
    p.add_argument("--anode", default=default("anode"), help=_help("anode"))
    p.set_defaults(func=flows_command("demo"))
