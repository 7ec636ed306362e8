"""``maxrf tree|check|recover|repack``: datastack commands of the command line."""

from __future__ import annotations

import argparse

from .datastack import DataStack, check, recover


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
    target = ds.repack(select=args.keep or None, output=args.output)
    print(
        f"repacked {target}: {before} -> {target.stat().st_size} bytes; layers: "
        f"{', '.join(DataStack(target).layers)}"
    )
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .plots import plot_all

    paths = plot_all(args.file)
    if not paths:
        print(f"{args.file}: no layers to plot yet (convert first)")
    for p in paths:
        print(f"wrote {p}")
    return 0


def add_commands(sub, flows_command) -> None:
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
