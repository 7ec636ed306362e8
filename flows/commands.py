"""Handlers of the orchestrated ``maxrf`` commands: each runs a flow (Prefect's ephemeral mode
when no server is configured) and prints what a user needs; errors become one line."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from flows.server import use_server
from maxrf.cli.options import anode_value
from maxrf.errors import MaxrfError
from maxrf.viewer import view_command


def use_running_server() -> bool:
    """Point Prefect at a server (the configured one, or maxrf's background server, started on
    first use); False when the user chose Prefect's temporary server."""
    url = use_server()
    from flows import server

    if server.started:
        info = server.started[-1]
        print(f"started a Prefect server for maxrf in the background: {info.ui} "
              "(kept for the next commands; 'maxrf server stop' stops it)", flush=True)
        server.started.clear()
    return url is not None


def _all_cached(kwargs: dict, maps: bool | None) -> dict | None:
    """With no server to record a run in, a rerun whose every layer exists needs no flow.
    ``maps``: the whole chain with or without the element maps; None: the conversion only."""
    from maxrf.datastack import DataStack
    from maxrf.io.raw import open_scan
    from maxrf.pipeline import runner
    from maxrf.pipeline import table as pipeline

    scan = open_scan(kwargs["raw_path"])
    datastack = kwargs.get("output") or str(scan.raw.with_suffix(".datastack"))
    steps = ((pipeline.step("convert"),) if maps is None
             else pipeline.chain(maps, livetime=bool(kwargs.get("pulser_hz")),
                                 photo=bool(kwargs.get("photo"))))
    ref = runner.Scan(str(scan.raw), str(scan.rpl), scan.key(kwargs.get("fingerprint", "quick")),
                      scan.metadata)
    chain = runner.cached_chain(datastack, ref, kwargs, steps)
    if chain is None:
        return None
    rows = [{"step": r["step"], "cached": True, "key": r["key"]} for r in chain]
    return {"datastack": datastack, "tree": DataStack(datastack).tree(), "steps": rows,
            "plots": [],
            "view": view_command(datastack)}


def _run(flow, **kwargs) -> dict:
    """Run a flow and return its result; a failed run raises its original exception."""
    where = os.environ.get("PREFECT_API_URL") or "a temporary Prefect server"
    target = kwargs.get("raw_path") or kwargs.get("folder")
    print(f"running flow {flow.name} on {target} ({where}) ...", flush=True)
    import prefect.settings as ps
    from prefect.exceptions import ParameterTypeError

    from maxrf.errors import MaxrfError

    # No flow-run heartbeats from the command line: stopping their thread costs up to 1 s per
    # run, and they only matter to an automation the user set up for zombie runs (worker runs).
    try:
        with ps.temporary_settings(updates={ps.PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            state = flow(**kwargs, return_state=True)
    except ParameterTypeError as exc:
        raise MaxrfError(" ".join(str(exc).split())) from None
    ui = os.environ.get("PREFECT_UI_URL")
    run_id = state.state_details.flow_run_id
    if ui and run_id and os.environ.get("PREFECT_API_URL"):
        print(f"the run in the Prefect UI: {ui}/runs/flow-run/{run_id}", flush=True)
    return state.result(raise_on_failure=True)


def _check_output(path: Path) -> None:
    """An existing output must be a datastack (a regular file maxrf can append to): refused
    here in one line, before Prefect starts, as the conversion itself would refuse it."""
    import os

    from maxrf.datastack import DataStack
    from maxrf.datastack.integrity import is_datastack
    from maxrf.errors import DataStackError

    if not os.path.lexists(path):
        return
    DataStack(path).require_file()
    if not is_datastack(Path(os.path.realpath(path))):
        raise DataStackError("exists and is not a datastack; refusing to write into it", path)


def _scan_kwargs(args: argparse.Namespace, names: tuple[str, ...]) -> dict:
    """Flow parameters from the arguments (the table's ``names``), all checked, and the scan
    validated first: one-line errors for a missing file, a bad header, a wrong size or a bad
    value, before Prefect starts."""
    from maxrf.cli.options import values
    from maxrf.io.raw import open_scan
    from maxrf.pipeline.params import check_parameters

    scan = open_scan(args.scan)
    _check_output(Path(args.output) if args.output else scan.raw.with_suffix(".datastack"))
    kwargs = values(args, names)
    check_parameters(**kwargs)
    return {"raw_path": str(Path(args.scan)), "output": args.output, **kwargs}


def _print_summary(result: dict, verbose: bool = False, view: bool = True) -> None:
    if verbose:
        print(result["tree"])
    else:  # the whole layer table is for -v / `maxrf tree`
        first = result["tree"].splitlines()[0] if result.get("tree") else ""
        print(f"{first}  (layers: maxrf tree {result.get('datastack', '')} or -v)".strip())
    for step in result["steps"]:
        how = "cached" if step["cached"] else f"computed in {step['duration_s']} s"
        if step.get("made_by") and not step["cached"]:  # by that step's pass, in this run
            how = f"computed in the {step['made_by']} step's pass ({step['duration_s']} s)"
        print(f"  step {step['step']:<13} {how}")
    for png in result.get("plots", []):
        print(f"  plot {png}")
    for warning in result.get("warnings", []):
        print(f"  warning: {warning}")
    if view and result.get("view"):
        print(f"look at it: {result['view']}")


def _flow(name: str):
    """A flow of ``flows.process_scan``, imported (with Prefect) only after the server is set."""
    import flows.process_scan

    return getattr(flows.process_scan, name)


def _run_or_reuse(flow_name: str, kwargs: dict, maps: bool | None, rerun: bool,
                  verbose: bool = False) -> int:
    """Run the flow; with no server to record it in, skip it when every layer is cached."""
    if not use_running_server() and not rerun:
        done = _all_cached(kwargs, maps)
        if done:
            _print_summary(done, verbose)
            print("every step is cached: nothing to run (--rerun records a Prefect run anyway)")
            return 0
    _print_summary(_run(_flow(flow_name), **kwargs), verbose)
    return 0


def cmd_process(args: argparse.Namespace) -> int:
    from maxrf.pipeline.table import PROCESSING

    kwargs = _scan_kwargs(args, PROCESSING)
    return _run_or_reuse("process_scan", kwargs, maps=kwargs["maps"], rerun=args.rerun,
                         verbose=args.verbose)


def cmd_convert(args: argparse.Namespace) -> int:
    from maxrf.pipeline.table import CONVERTING

    return _run_or_reuse("convert_scan_flow", _scan_kwargs(args, CONVERTING), maps=None,
                         rerun=args.rerun, verbose=args.verbose)


def cmd_watch(args: argparse.Namespace) -> int:
    from maxrf.cli.flows import WATCHING
    from maxrf.cli.options import values
    from maxrf.io.scans import survey
    from maxrf.pipeline.params import check_parameters
    from maxrf.pipeline.table import PROCESSING

    settings = values(args, (*WATCHING, *PROCESSING))
    check_parameters(**settings)
    survey(args.folder, args.pattern, args.settle_s)  # a missing folder fails here, in one line
    if not use_running_server() and args.events:
        raise MaxrfError("--events needs a Prefect server that stays up (unset MAXRF_SERVER)")
    if args.events:
        return _announce(args)
    from flows.watch_scans import watch_scans

    while True:
        summary = _run(watch_scans, folder=args.folder, **settings)
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


def _announce(args: argparse.Namespace) -> int:
    from flows.scan_events import EVENT, announce_new_scans

    print(f"announcing complete new scans of {args.folder} as {EVENT} events "
          f"({os.environ['PREFECT_API_URL']})", flush=True)
    while True:
        summary = announce_new_scans(args.folder, args.pattern, args.settle_s)
        for raw in summary["announced"]:
            print(f"  announced {raw}", flush=True)
        for item in summary["bad"]:
            print(f"  {item['raw']}: {item['reason']}")
        if args.once:
            return 0
        time.sleep(args.interval)


def cmd_serve(args: argparse.Namespace) -> int:
    use_running_server()
    from flows.serve import serve_deployments

    serve_deployments(args.folder, args.interval)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    use_running_server()
    from flows.process_scan import process_scan
    from maxrf.demo import DemoSpec, generate_scan, photo_transform, render_photo

    folder = Path(args.folder)
    prefix = folder / "demo-scan"
    if not Path(f"{prefix}.raw").exists():
        print(f"generating a {args.height}x{args.width}x4096 demo scan of a painting in "
              f"{args.paints} paints, and a photograph of it, in {folder} ...")
        generate_scan(
            prefix,
            DemoSpec(height=args.height, width=args.width, seed=args.seed, anode=args.anode,
                     layout="B", paints=args.paints),
        )
    photo = Path(f"{prefix}.photo.jpg")
    if not photo.exists():  # turned a quarter and a bit, 3 photo pixels per scan pixel
        render_photo(prefix, photo_transform(3.0, 91.5, (3.0 * args.height + 150, 90), 4e-5),
                     (3 * args.width + 260, 3 * args.height + 300), seed=args.seed)
    result = _run(process_scan, raw_path=f"{prefix}.raw", anode=anode_value(args.anode),
                  photo=str(photo))
    _print_summary(result, args.verbose, view=False)
    _compare_with_truth(result["datastack"], Path(f"{prefix}.truth.json"))
    print(f"ground truth: {prefix}.truth.json; run again to see every step cached")
    print(f"look at it: {result['view']}")
    return 0


def _compare_with_truth(datastack: str, truth_path: Path) -> None:
    """How close the results are to what the demo generator planted."""
    import json

    import numpy as np

    from maxrf.datastack import DataStack

    truth = json.loads(truth_path.read_text())
    ds = DataStack(datastack)
    energies = ds.read("maxrf_energies")
    axis = truth["offset_kev"] + truth["gain_kev"] * np.arange(energies.size)
    inside = (axis >= 0) & (axis <= 40)
    err = np.abs(energies - axis)[inside].max() * 1000
    spots = {tuple(s) for s in ds.read("hotmax_spots").tolist()}
    found = sum((h["row"], h["col"]) in spots for h in truth["hotspots"])
    angle = ds.attrs("maxrf_energies")["calibration"].get("scatter_angle_deg")
    print(
        f"vs ground truth: energy axis within {err:.1f} eV over 0-40 keV; "
        f"{found}/{len(truth['hotspots'])} planted hot spots found at their exact pixel"
        + (f"; scatter angle {angle:.1f}° (planted {truth['angle']:.0f}°)" if angle else "")
    )
    planted = truth_path.with_suffix(".npz")
    if "maxrf_elementmaps" in ds and planted.exists():
        from maxrf.pipeline.elementmaps import compare_with_truth

        print("element maps vs the planted ones (counts per pixel; total = fitted/planted, r and "
              "rel. RMSE on 4x4 bins; a hot-spot-only element's RMSE is large by nature):")
        for row in compare_with_truth(datastack, planted):
            print("  " + row)
    photo_truth = truth_path.with_name(truth_path.name.replace(".truth.json", ".photo.json"))
    if "maxrf_registration" in ds and photo_truth.exists():
        from maxrf.imaging.registration import corner_errors

        err = corner_errors(np.array(ds.attrs("maxrf_registration")["matrix"]),
                            np.array(json.loads(photo_truth.read_text())["matrix"]),
                            ds.array("maxrf_raw").shape[:2])
        print(f"registration to the photo vs the true transform: corners within "
              f"{err.max():.2f} scan pixel (median {np.median(err):.2f})")
    if "maxrf_materials" in ds and planted.exists():
        from maxrf.pipeline.materials import adjusted_rand_index

        with np.load(planted) as npz:
            paints = npz["materials"] if "materials" in npz.files else None
        if paints is not None:
            labels = ds.read("maxrf_materials")
            print(f"materials: {int(labels.max()) + 1} found for {int(paints.max()) + 1} planted "
                  f"paints; agreement (adjusted Rand index) "
                  f"{adjusted_rand_index(labels.ravel(), paints.ravel()):.2f}")


def cmd_deploy(args: argparse.Namespace) -> int:
    """Check the scan folder (one line when it is unset or missing), make sure the work pool
    exists, then ``prefect --no-prompt deploy --all`` from the project folder."""
    import subprocess
    import sys

    folder = args.folder or os.environ.get("MAXRF_SCAN_FOLDER", "")
    if not folder.strip():
        raise MaxrfError("no scan folder: give --folder DIR or set MAXRF_SCAN_FOLDER")
    if not Path(folder).is_dir():
        raise MaxrfError(f"{folder}: the scan folder does not exist or is not a folder")
    project = Path(__file__).resolve().parents[1]
    if not (project / "prefect.yaml").is_file():
        raise MaxrfError(f"{project}: no prefect.yaml here (deploy from a source checkout)")
    use_running_server()
    env = {**os.environ, "MAXRF_SCAN_FOLDER": str(Path(folder).resolve())}
    prefect = [sys.executable, "-m", "prefect"]
    inspect = subprocess.run([*prefect, "work-pool", "inspect", args.pool], env=env,
                             capture_output=True, text=True)
    if inspect.returncode != 0:
        subprocess.run([*prefect, "work-pool", "create", args.pool, "--type", "process"],
                       env=env, check=True, capture_output=True)
    done = subprocess.run([*prefect, "--no-prompt", "deploy", "--all", "--pool", args.pool],
                          env=env, cwd=project, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()
        raise MaxrfError(f"prefect deploy failed: {tail[-1] if tail else done.returncode}")
    from flows.form import tidy_deployed_forms

    tidy_deployed_forms(["process-scan/process-scan", "process-scan/process-scan-on-event",
                         "watch-scans/watch-scans"])
    print(f"deployed process-scan, process-scan-on-event and watch-scans (folder {folder}) "
          f"to work pool {args.pool!r}; start a worker: PREFECT_API_URL="
          f"{os.environ.get('PREFECT_API_URL', '')} prefect worker start --pool {args.pool}")
    return 0


def cmd_server(args: argparse.Namespace) -> int:
    """``maxrf server status|start|stop``: the background Prefect server the commands share."""
    from flows import server

    if args.action == "start":
        info = server.start()
        print(f"Prefect server running: {info.ui} (pid {info.pid}, home {info.home})")
        return 0
    if args.action == "stop":
        info = server.stop()
        print(f"stopped the Prefect server at {info.ui}" if info else "no Prefect server running")
        return 0
    info = server.current()
    if info is None:
        print(f"no Prefect server running (home {server.maxrf_home() / 'prefect-server'})")
        return 3
    print(f"Prefect server running: {info.ui} (pid {info.pid}, home {info.home})")
    return 0


COMMANDS = {
    "deploy": cmd_deploy,
    "server": cmd_server,
    "process": cmd_process,
    "convert": cmd_convert,
    "watch": cmd_watch,
    "serve": cmd_serve,
    "demo": cmd_demo,
}
