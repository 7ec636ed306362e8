"""Arguments of the orchestrated commands (``process``, ``convert``, ``watch``, ``serve``,
``demo``). Their handlers live in ``flows.commands`` and import Prefect only when they run."""

from __future__ import annotations

import argparse

from maxrf.datastack.layers import PRECISION_BITS
from maxrf.pipeline.table import FINGERPRINTS, PARAMS, default

DEFAULT_PRECISION_BITS = default("precision_bits")


def _help(name: str) -> str:
    """A parameter's description from the pipeline table (argparse-safe)."""
    return PARAMS[name].description.replace("%", "%%")


def _precision_bits(text: str) -> int:
    try:
        bits = int(text)
    except ValueError:
        bits = 0
    if bits not in PRECISION_BITS:
        raise argparse.ArgumentTypeError(
            f"must be an integer from {PRECISION_BITS[0]} to {PRECISION_BITS[-1]}, got {text!r}"
        )
    return bits


def _scan_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("scan", help="SCAN.raw (its .rpl header beside it)")
    p.add_argument("-o", "--output", help="datastack file (default: SCAN.datastack beside it)")
    p.add_argument("--sigma", type=float, default=default("sigma"), help=_help("sigma"))
    p.add_argument("--flip-horizontal", action="store_true", help=_help("flip_horizontal"))
    p.add_argument("--flip-vertical", action="store_true", help=_help("flip_vertical"))
    precision = p.add_mutually_exclusive_group()
    precision.add_argument(
        "--precision-bits",
        type=_precision_bits,
        default=DEFAULT_PRECISION_BITS,
        metavar="N",
        help="store each smoothed spectrum to 2**-(N+1) of its peak "
        f"(default {DEFAULT_PRECISION_BITS}: error <= 6.1e-5 x peak; see README)",
    )
    precision.add_argument(
        "--lossless",
        dest="precision_bits",
        action="store_const",
        const=None,
        help="store the smoothed cube exactly (larger file, slower)",
    )
    p.add_argument(
        "--fingerprint",
        choices=FINGERPRINTS,
        default=default("fingerprint"),
        help=_help("fingerprint"),
    )
    p.add_argument("--dask", metavar="ADDRESS", help="a dask.distributed scheduler to use")
    p.add_argument(
        "--rerun",
        action="store_true",
        help="run the flow even when every layer is cached (records a Prefect run)",
    )


def _map_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tube-kv", type=float, default=default("tube_kv"), help=_help("tube_kv"))
    p.add_argument("--elements", metavar="LIST",
                   help="elements to map, e.g. Pb,Hg,As (default: proposed from the data)")
    p.add_argument("--add-elements", metavar="LIST", help="map these too")
    p.add_argument("--drop-elements", metavar="LIST", help="never map these")


def add_commands(sub, flows_command) -> None:
    p = sub.add_parser("process", help="run the whole chain on a scan (Prefect flow)")
    _scan_options(p)
    p.add_argument("--anode", default=default("anode"), help=_help("anode"))
    p.add_argument("--prominence", type=float, default=default("prominence"),
                   help=_help("prominence"))
    p.add_argument(
        "--energies",
        type=float,
        nargs=2,
        metavar=("START", "STOP"),
        help="manual calibration: keV of the first and last channel",
    )
    p.add_argument("--no-plots", action="store_true")
    _map_options(p)
    p.add_argument("--no-maps", action="store_true", help="stop before the element maps")
    p.add_argument("--pulser-hz", type=float, metavar="HZ", help=_help("pulser_hz"))
    p.add_argument("--dwell-ms", type=float, metavar="MS", help=_help("dwell_ms"))
    p.set_defaults(func=flows_command("process"))

    p = sub.add_parser("convert", help="convert a scan: raw, cube, spectra (Prefect flow)")
    _scan_options(p)
    p.set_defaults(func=flows_command("convert"))

    p = sub.add_parser("watch", help="process every complete new scan of a folder")
    p.add_argument("folder")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between looks")
    p.add_argument("--settle", type=float, default=default("settle_s"), help=_help("settle_s"))
    p.add_argument("--pattern", default=default("pattern"), help=_help("pattern"))
    p.add_argument("--anode", default=default("anode"), help=_help("anode"))
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
    p.add_argument("--anode", default=default("anode"), help=_help("anode"))
    p.set_defaults(func=flows_command("demo"))
