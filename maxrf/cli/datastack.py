"""``maxrf tree|check|recover|repack``: datastack commands of the command line."""

from __future__ import annotations

import argparse

from maxrf.datastack import DataStack, check, recover, repack


def cmd_tree(args: argparse.Namespace) -> int:
    print(DataStack(args.file).tree(show_arrays=args.arrays))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    report = check(args.file)
    for problem in report.problems:
        print(f"problem: {problem}")
    status = "OK" if report.ok else f"{len(report.problems)} problem(s)"
    print(
        f"{args.file}: {status} ({len(report.layers)} layers, {report.entries} entries, "
        "CRCs checked)"
    )
    return 0 if report.ok else 1


def cmd_recover(args: argparse.Namespace) -> int:
    out, kept, dropped = recover(args.file, args.output)
    print(f"wrote {out}: kept {len(kept)} layer(s) {', '.join(kept)}")
    if dropped:
        print(f"dropped incomplete: {', '.join(dropped)}")
    return 0


def cmd_repack(args: argparse.Namespace) -> int:
    ds = DataStack(args.file)
    before = ds.path.stat().st_size
    target = repack(ds, select=args.keep or None, output=args.output)
    print(
        f"repacked {target}: {before} -> {target.stat().st_size} bytes; layers: "
        f"{', '.join(DataStack(target).layers)}"
    )
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from maxrf.figures.plots import plot_all

    paths = plot_all(args.file)
    if not paths:
        print(f"{args.file}: no layers to plot yet (convert first)")
    for p in paths:
        print(f"wrote {p}")
    return 0


def cmd_maps(args: argparse.Namespace) -> int:
    """Fit element maps into a datastack (or reuse them) and export them."""
    from pathlib import Path

    from maxrf.errors import MaxrfError
    from maxrf.figures.mapexport import export_all, parse_color
    from maxrf.pipeline.elementmaps import parse_elements
    from maxrf.pipeline.runner import map_elements

    ds = DataStack(args.file)
    ds.require_file()
    chosen = parse_elements(args.elements)
    add, drop = parse_elements(args.add_elements), parse_elements(args.drop_elements)
    rgb = parse_elements(args.rgb)
    colors = args.colors.split(",") if args.colors else None
    if rgb is not None and not 1 <= len(rgb) <= 4:
        raise MaxrfError(f"--rgb takes 1 to 4 elements, got {len(rgb)}")
    for color in colors or []:  # every mistake before any work or file
        parse_color(color)
    run = map_elements(ds.path, elements=chosen, add=add, drop=drop, anode=args.anode,
                       tube_kv=args.tube_kv, force=args.refit, scheduler=args.dask)
    if run.cached:
        print(f"using the element maps in {ds.path} with these parameters' key {run.key} "
              "(--refit to fit again)")
    pinned = DataStack(ds.path, pins=run.layers)
    attrs = pinned.attrs("maxrf_elementmaps")
    maps = pinned.read("maxrf_elementmaps")
    speed = attrs.get("maxrf", {}).get("spectra_per_s")
    print(f"element maps of {ds.path.name}: {maps.shape[1]} x {maps.shape[2]} pixels"
          + (f", fitted at {speed} spectra/s" if speed else ""))
    for el, m in zip(attrs["elements"], maps, strict=True):
        print(f"  {el:<3} mean {m.mean():9.2f}  max {m.max():10.1f} counts/pixel")
    for warning in attrs.get("warnings", []):
        print(f"  warning: {warning}")
    if args.export or rgb:
        folder = Path(args.export or ds.path.with_suffix(".maps"))
        out = export_all(pinned, folder, rgb, colors, args.pixel_size_mm)
        print(f"wrote {len(out)} files to {folder}")
    return 0


def cmd_materials(args: argparse.Namespace) -> int:
    """Map the materials (paints) of a datastack from its element maps (or reuse them)."""
    from maxrf.errors import MaxrfError
    from maxrf.pipeline.params import check_parameters
    from maxrf.pipeline.runner import Options, Runner

    ds = DataStack(args.file)
    ds.require_file()
    if "maxrf_elementmaps" not in ds:
        raise MaxrfError("no element maps: run 'maxrf maps' first", ds.path)
    check_parameters(materials=args.k)
    runner = Runner(ds.path, {"materials": args.k}, options=Options(progress=None),
                    force=args.refit)
    (run,) = runner.run(["materials"])
    pinned = DataStack(ds.path, pins=run.layers)
    attrs = pinned.attrs("maxrf_materials")
    comp = pinned.read("maxrf_materials_composition")
    elements = attrs["elements"]
    how = ("as given" if attrs.get("chosen") == "given" else
           f"chosen at the elbow of the BIC over 1-{max(map(int, attrs.get('bic', {1: 0})))}")
    print(f"{attrs['k']} materials in {ds.path.name} ({how})"
          + (" (cached)" if run.cached else ""))
    for m, (row, px, names) in enumerate(zip(comp, attrs["pixels"], attrs["main_elements"],
                                              strict=True)):
        counts = dict(zip(elements, row, strict=True))
        print(f"  material {m}: {px} pixels; " + ", ".join(f"{el} {counts[el]:.0f}"
                                                          for el in names) + " counts/pixel")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    """Register a scan to a photograph (automatically, or from control points); optionally write
    the maps warped onto the photo and an overlay."""
    from pathlib import Path

    from maxrf.pipeline.params import check_parameters
    from maxrf.pipeline.runner import Options, Runner

    ds = DataStack(args.file)
    ds.require_file()
    if args.refine and not args.points:
        from maxrf.errors import MaxrfError

        raise MaxrfError("--refine refines the control points' transform: give --points too")
    params = {"photo": args.photo, "photo_points": args.points, "refine_points": args.refine,
              "registration_model": args.model}
    check_parameters(**params)
    (run,) = Runner(ds.path, params, options=Options(progress=None), force=args.again).run(
        ["register"])
    attrs = DataStack(ds.path, pins=run.layers).attrs("maxrf_registration")
    if "residual_px" in attrs:
        res = attrs["residual_px"]
        quality = f"residual rms {res['rms']:.2f} px, max {res['max']:.2f} px"
        if "correlation" in attrs:
            quality += (f"; refined: correlation {attrs['correlation']:.2f}, the points moved "
                        f"by up to {attrs['points_moved_px']:.1f} px")
    else:
        quality = (f"correlation {attrs['correlation']:.2f} ({attrs['chance_correlation']:.2f} "
                   f"by chance), {100 * attrs['overlap']:.0f} % of the scan in the photo")
    how = ("control points, refined" if args.points and args.refine else
           "control points" if args.points else "automatic")
    print(f"registered {ds.path.name} to {attrs['photo']['name']} "
          f"({attrs['photo']['width']} x {attrs['photo']['height']} px): {attrs['model']}, "
          f"{how}, {quality}" + (" (cached)" if run.cached else ""))
    if args.export:
        from maxrf.figures.mapexport import export_registered

        out = export_registered(ds.path, args.photo, Path(args.export), args.opacity)
        print(f"wrote {len(out)} files to {args.export}")
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    """Serve the local web viewer of a datastack (building its band layers first if needed)."""
    from maxrf.errors import MaxrfError
    from maxrf.pipeline.runner import Options, Runner
    from maxrf.viewer.server import serve

    ds = DataStack(args.file)
    ds.require_file()
    if "maxrf_raw" not in ds:
        raise MaxrfError("no layer 'maxrf_raw': convert the scan first ('maxrf process')",
                         ds.path)

    def say(msg: str) -> None:
        if "computing" in msg:
            print(f"building the viewer's band layers in {ds.path.name} (one pass over the "
                  "counts)", flush=True)

    Runner(ds.path, options=Options(progress=None), log=say).run(["bands"])
    serve(ds.path, args.host, args.port, open_browser=not args.no_browser,
          pixel_size_mm=args.pixel_size_mm)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write a datastack's data in another tool's format."""
    from pathlib import Path

    from maxrf.exports import export

    ds = DataStack(args.file)
    ds.require_file()
    target = Path(args.output) if args.output else ds.path.with_name(ds.path.stem + "-export")
    written = export(ds, args.to, target)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"must be a positive number of mm, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port from 0 to 65535, got {text!r}")
    return port


def add_commands(sub) -> None:
    p = sub.add_parser("view", help="explore a datastack in the browser (local web viewer)")
    p.add_argument("file", help="SCAN.datastack")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default loopback)")
    p.add_argument("--port", type=_port, default=8765,
                   help="TCP port (default 8765; the next free one when taken; 0: any)")
    p.add_argument("--no-browser", action="store_true", help="only print the URL")
    p.add_argument("--pixel-size-mm", type=_positive, metavar="MM",
                   help="the scan's pixel size for the scale bar (default: from the scan file)")
    p.set_defaults(func=cmd_view)

    p = sub.add_parser("maps", help="fit per-pixel element maps into a datastack and export them")
    p.add_argument("file", help="SCAN.datastack (converted and calibrated)")
    p.add_argument("--anode", help="tube anode (Rh, Mo, Ag, W, Cr, Cu) or keV "
                   "(default: the calibration's)")
    p.add_argument("--tube-kv", type=float, help="tube voltage, kV (default: the calibration's)")
    p.add_argument("--elements", metavar="LIST", help="elements to map, e.g. Pb,Hg,As")
    p.add_argument("--add-elements", metavar="LIST", help="map these too")
    p.add_argument("--drop-elements", metavar="LIST", help="never map these")
    p.add_argument("--refit", action="store_true", help="fit again even if maps exist")
    p.add_argument("--export", metavar="DIR", help="write TIFFs and PNGs here")
    p.add_argument("--rgb", metavar="LIST", help="RGB composite of up to 4 elements")
    p.add_argument("--pixel-size-mm", type=_positive, metavar="MM",
                   help="pixel size for scale bars and TIFF calibration (default: the scan's)")
    p.add_argument("--colors", metavar="LIST", help="composite colours (names or #rrggbb)")
    p.add_argument("--dask", metavar="ADDRESS", help="a dask.distributed scheduler to use")
    p.set_defaults(func=cmd_maps)

    from maxrf.exports import FORMATS

    p = sub.add_parser("materials", help="map which pixels share a paint (from the element maps)")
    p.add_argument("file", help="SCAN.datastack (with element maps)")
    p.add_argument("--k", type=int, metavar="K", help="how many materials (default: chosen "
                   "from the data)")
    p.add_argument("--refit", action="store_true", help="cluster again even if maps exist")
    p.set_defaults(func=cmd_materials)

    p = sub.add_parser("register", help="register a scan to a photograph of the painting "
                       "(automatically, or from control points)")
    p.add_argument("file", help="SCAN.datastack")
    p.add_argument("photo", help="the photograph (PNG, JPEG, TIFF)")
    p.add_argument("--points", metavar="CSV",
                   help="control points: scan_col, scan_row, photo_x, photo_y per line "
                        "(default: found automatically)")
    p.add_argument("--model", choices=["similarity", "affine", "homography"], default=None,
                   help="the transform (default affine; homography for a photo taken at an angle)")
    p.add_argument("--refine", action="store_true",
                   help="refine the control points' transform by matching the maps to the photo")
    p.add_argument("--again", action="store_true",
                   help="register again even when this photo's registration exists")
    p.add_argument("--export", metavar="DIR",
                   help="write the element maps warped onto the photo and an overlay here")
    p.add_argument("--opacity", type=float, default=0.6, help="of the maps in the overlay")
    p.set_defaults(func=cmd_register)

    p = sub.add_parser("export", help="write a datastack's counts or maps in another format")
    p.add_argument("file", help="SCAN.datastack")
    p.add_argument("--to", choices=list(FORMATS), default="rpl",
                   help="; ".join(f"{k}: {v}" for k, v in FORMATS.items()))
    p.add_argument("-o", "--output", metavar="PATH",
                   help="prefix (rpl, hspy), file (dms) or folder (tiff); default: "
                        "SCAN-export beside the datastack")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("tree", help="list the layers of a datastack")
    p.add_argument("file")
    p.add_argument("--arrays", action="store_true", help="show chunks and codecs too")
    p.set_defaults(func=cmd_tree)

    p = sub.add_parser("check", help="verify a datastack's structure and CRCs")
    p.add_argument("file")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("recover", help="salvage intact layers of a damaged datastack")
    p.add_argument("file")
    p.add_argument("-o", "--output", help="output file (default FILE.recovered.datastack)")
    p.set_defaults(func=cmd_recover)

    p = sub.add_parser("plot", help="(re)draw the PNG plots beside a datastack")
    p.add_argument("file")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("repack", help="keep only the latest version of each layer")
    p.add_argument("file")
    p.add_argument("--keep", nargs="*", help="layer names to keep (default: all)")
    p.add_argument("-o", "--output", help="write here instead of replacing FILE")
    p.set_defaults(func=cmd_repack)
