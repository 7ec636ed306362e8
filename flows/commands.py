"""Handlers of the orchestrated ``maxrf`` commands: each runs a flow (Prefect's ephemeral mode
when no server is configured) and prints what a user needs; errors become one line."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from maxrf.errors import MaxrfError


def _run(flow, **kwargs) -> dict:
    """Run a flow and return its result; a failed run raises its original exception."""
    state = flow(**kwargs, return_state=True)
    return state.result(raise_on_failure=True)


def _scan_kwargs(args: argparse.Namespace) -> dict:
    return {
        "raw_path": str(Path(args.scan)),
        "output": args.output,
        "sigma": args.sigma,
        "flip_horizontal": args.flip_horizontal,
        "flip_vertical": args.flip_vertical,
        "keep_bits": args.keep_bits,
        "fingerprint": args.fingerprint,
        "dask_address": args.dask,
    }


def _print_summary(result: dict) -> None:
    print(result["tree"])
    for step in result["steps"]:
        how = "cached" if step["cached"] else f"computed in {step['duration_s']} s"
        print(f"  step {step['step']:<13} {how}")
    for png in result.get("plots", []):
        print(f"  plot {png}")


def cmd_process(args: argparse.Namespace) -> int:
    from flows.process_scan import process_scan

    kwargs = _scan_kwargs(args) | {
        "anode": args.anode,
        "prominence": args.prominence,
        "energies": tuple(args.energies) if args.energies else None,
        "plots": not args.no_plots,
    }
    _print_summary(_run(process_scan, **kwargs))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from flows.process_scan import convert_scan_flow

    _print_summary(_run(convert_scan_flow, **_scan_kwargs(args)))
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from flows.watch_scans import watch_scans

    while True:
        summary = _run(
            watch_scans,
            folder=args.folder,
            pattern=args.pattern,
            settle_s=args.settle,
            anode=args.anode,
        )
        print(
            f"processed {len(summary['processed'])}, already done {len(summary['already'])}, "
            f"waiting {len(summary['waiting'])}, bad {len(summary['bad'])}, "
            f"failed {len(summary['failed'])}"
        )
        for item in summary["bad"] + summary["failed"]:
            print(f"  {item['raw']}: {item['reason']}")
        if args.once:
            return 0
        time.sleep(args.interval)


def cmd_serve(args: argparse.Namespace) -> int:
    from flows.serve import serve_deployments

    serve_deployments(args.folder, args.interval)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from flows.process_scan import process_scan
    from maxrf.demo import DemoSpec, generate_scan

    folder = Path(args.folder)
    prefix = folder / "demo-scan"
    if not Path(f"{prefix}.raw").exists():
        print(f"generating a {args.height}x{args.width}x4096 demo scan in {folder} ...")
        generate_scan(
            prefix,
            DemoSpec(
                height=args.height, width=args.width, seed=args.seed, anode=args.anode, layout="B"
            ),
        )
    result = _run(process_scan, raw_path=f"{prefix}.raw", anode=args.anode)
    _print_summary(result)
    print(f"ground truth: {prefix}.truth.json; run again to see every step cached")
    return 0


COMMANDS = {
    "process": cmd_process,
    "convert": cmd_convert,
    "watch": cmd_watch,
    "serve": cmd_serve,
    "demo": cmd_demo,
}

__all__ = ["COMMANDS", "MaxrfError"]
