"""The ``maxrf`` command line. Core commands live here; the orchestrated ones (``process``,
``convert``, ``watch``, ``serve``) are imported from ``flows`` only when they run, so the core
library never imports Prefect."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from maxrf import __version__
from maxrf.errors import MaxrfError
from maxrf.io.raw import check_raw_size, scan_paths
from maxrf.io.rpl import read_rpl
from maxrf.pipeline.table import default
from maxrf.xrf.defaults import DEFAULT_TUBE_KV


def cmd_info(args: argparse.Namespace) -> int:
    from maxrf.io.raw import read_one_file_header

    meta = None
    one_file = read_one_file_header(args.scan)  # Crono HDF5, .bcf, .spx: the header is made
    if one_file is not None:  # from the file's own datasets
        header, meta = one_file
        raw = rpl = Path(args.scan)
    else:
        raw, rpl = scan_paths(args.scan)
        header = read_rpl(rpl)
    actual = raw.stat().st_size if raw.exists() else None
    info = {**header.to_dict(), "raw": str(raw), "raw_bytes_actual": actual}
    if meta is not None:
        info["metadata"] = meta
    if args.json:
        print(json.dumps(info))
    else:
        energy = header.energy
        print(f"header     {rpl}")
        print(f"raw        {raw} ({actual if actual is not None else 'missing'} bytes)")
        print(f"shape      {header.height} x {header.width} x {header.depth} (height x width x ch)")
        print(
            f"dtype      {header.dtype.str} ({header.data_type} {header.data_length} bytes, "
            f"{header.byte_order}), record-by {header.record_by}, offset {header.offset}"
        )
        if meta is None:
            print(f"expected   {header.raw_bytes_expected} bytes")
        print(
            "energy     "
            + (
                "none in header"
                if energy is None
                else f"{energy.offset_kev:+.4f}keV + {energy.gain_kev:.6f} keV/ch [{energy.source}]"
            )
        )
        if meta is not None:
            print(f"format     {describe_format(meta)}")
        if header.depth_axis is not None:
            axis = header.depth_axis
            print(f"depth axis {axis['origin']:g} + {axis['scale']:g} {axis['units']} per "
                  f"channel [{axis['source']}] (not energy: 'convert' refuses it)")
    if args.check and meta is None:
        check_raw_size(header, raw)
    return 0


def describe_format(meta: dict) -> str:
    """One line naming a one-file scan's format and what it says about the measurement."""
    fmt = meta.get("format", "")
    if fmt == "crono-hdf5":
        return f"Bruker Crono HDF5 ({meta['spectra_measured']} spectra measured)"
    names = {"bruker-bcf": "Bruker .bcf hypermap", "bruker-spx": "Bruker .spx spectrum"}
    name = names.get(fmt, fmt)
    facts = [f"{meta['tube_kv']:g} kV" if "tube_kv" in meta else "",
             f"live {meta['live_time_s']:g} s" if "live_time_s" in meta else "",
             f"pixel {meta['pixel_size_mm'] * 1000:.4g} µm" if "pixel_size_mm" in meta else ""]
    facts = [f for f in facts if f]
    return name + (f" ({', '.join(facts)})" if facts else "")


def cmd_demo_scan(args: argparse.Namespace) -> int:
    from maxrf.demo import DemoSpec, generate_scan

    spec = DemoSpec(
        height=args.height,
        width=args.width,
        channels=args.channels,
        seed=args.seed,
        gain=args.gain,
        offset=args.offset,
        anode=args.anode,
        tube_kv=args.tube_kv,
        angle=args.angle,
        counts=args.counts,
        hotspots=args.hotspots,
        dtype=args.dtype,
        record_by=args.record_by,
        layout=args.layout,
        layers=args.layers,
        pulser_hz=args.pulser_hz,
        tail=args.tail,
        shelf=args.shelf,
        pileup=args.pileup,
        light=args.light,
    )
    try:
        generate_scan(args.prefix, spec)
    except ValueError as exc:
        raise MaxrfError(str(exc), args.prefix) from None
    print(f"wrote {args.prefix}.raw, {args.prefix}.rpl, {args.prefix}.truth.json")
    return 0


def _add_demo_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=96)
    p.add_argument("--channels", type=int, default=4096)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gain", type=float, default=0.010002, help="keV per channel")
    p.add_argument("--offset", type=float, default=-0.956, help="keV at channel 0")
    p.add_argument("--anode", default=default("anode"), help="tube anode: Rh, Mo, Ag, W, Cr, Cu")
    p.add_argument("--tube-kv", type=float, default=DEFAULT_TUBE_KV, help="tube voltage, kV")
    p.add_argument("--angle", type=float, default=110.0, help="scatter angle in degrees")
    p.add_argument("--counts", type=float, default=2000.0, help="mean counts per spectrum")
    p.add_argument("--hotspots", type=int, default=3)
    p.add_argument("--dtype", default="<u2", help="numpy dtype of the raw file")
    p.add_argument("--record-by", default="vector", choices=["vector", "image"])
    p.add_argument("--layout", default="A", choices=["A", "B", "lispix"], help="header layout")
    p.add_argument("--layers", action="store_true",
                   help="paint over paint (Pb under ochre, Hg under azurite): line ratios vary "
                   "pixel by pixel")
    p.add_argument("--pulser-hz", type=float, default=0.0,
                   help="a zero-energy pulser at this rate (live time per pixel in the truth)")
    p.add_argument("--tail", type=float, default=0.0,
                   help="share of each line's counts in a low-energy tail (at 5.9 keV)")
    p.add_argument("--shelf", type=float, default=0.0,
                   help="share of each line's counts in a flat shelf down to 0 keV")
    p.add_argument("--pileup", type=float, default=0.0,
                   help="share of a mean pixel's counts piled up in pairs (sum peaks)")
    p.add_argument("--light", action="store_true", help="phosphorus and chlorine paint too")


def _flows_command(name: str):
    """A command implemented in ``flows.commands`` (imports Prefect only when it runs)."""

    def run(args: argparse.Namespace) -> int:
        return importlib.import_module("flows.commands").COMMANDS[name](args)

    return run


class _Parser(argparse.ArgumentParser):
    """Usage mistakes as one line (not argparse's usage block), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"maxrf: error: {message} (see '{self.prog} --help')\n")
        sys.exit(2)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 7 * 24 * 3600:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="maxrf", description="MA-XRF scans to analysis-ready zarr datastacks."
    )
    parser.add_argument(
        "--lock-wait", type=_seconds, metavar="SECONDS",
        help="how long to wait for another writer of the same datastack (default 120)",
    )
    parser.add_argument(
        "--temporary-server", action="store_true",
        help="run flows on a temporary Prefect server instead of the shared background one "
        "(also MAXRF_SERVER=temporary)",
    )
    parser.add_argument("--version", action="version", version=f"maxrf {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show Prefect's own log on the console"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="describe a scan from its .rpl header")
    p.add_argument("scan", help="SCAN.rpl or SCAN.raw")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--check", action="store_true", help="fail unless the .raw size is exact")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo-scan", help="write a synthetic scan with its ground truth")
    p.add_argument("prefix", help="writes PREFIX.raw, PREFIX.rpl, PREFIX.truth.json")
    _add_demo_options(p)
    p.set_defaults(func=cmd_demo_scan)

    from maxrf.cli import datastack as cli_datastack
    from maxrf.cli import flows as cli_flows

    cli_flows.add_commands(sub, _flows_command)
    cli_datastack.add_commands(sub)
    return parser


def quiet_prefect(verbose: bool) -> None:
    """Before Prefect is imported: no telemetry, server or client side (no network here; the
    client's switch is DO_NOT_TRACK, without which Prefect also prints a usage-data notice), a
    patient start for the temporary server (Prefect's 20 s ran out on a busy 2-core machine), and
    unless asked, no Prefect console log (runs still log to the Prefect server/UI); maxrf prints
    its own summary."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from maxrf.pipeline.memory import limit_heap

    limit_heap()  # a command's steps give back what they freed (bounded RSS across the chain)
    if args.lock_wait is not None:
        os.environ["MAXRF_LOCK_WAIT"] = str(args.lock_wait)
    if args.temporary_server:
        os.environ["MAXRF_SERVER"] = "temporary"
    quiet_prefect(args.verbose or args.debug)
    try:
        return int(args.func(args) or 0)
    except (MaxrfError, OSError) as exc:
        if args.debug:
            raise
        msg = str(exc) if isinstance(exc, MaxrfError) else _os_error(exc)
        print(f"maxrf: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("maxrf: interrupted", file=sys.stderr)
        return 130


def _os_error(exc: OSError) -> str:
    name = exc.filename if exc.filename is not None else ""
    return f"{name}: {exc.strerror or exc}" if name else str(exc.strerror or exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
