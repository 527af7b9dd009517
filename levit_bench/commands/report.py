"""`levit-bench report`."""

from __future__ import annotations

import argparse
from levit_bench.commands.common import onnx_options


def cmd_report(args: argparse.Namespace) -> int:
    from levit_bench import api, views

    result = api.report_result(args.out, platforms=args.platform, runtimes=args.runtime, onnx=args.onnx,
                               name=args.name, resolution=args.resolution, workdir=args.workdir, store=args.store,
                               progress=True)
    views.print_note(f"{result.points} measured points, {len(result.figures)} figures, {result.csv.name}")
    print(result.index.resolve())
    return 0


def register(commands) -> None:
    report = commands.add_parser(
        "report",
        help="speed-accuracy plots, Table 3 remade, runtime comparison, as HTML, PNG and CSV",
        description="Read the results store and write DIR/index.html (self-contained), "
        "DIR/tradeoff-<platform>.png and DIR/tradeoff-<platform>-<runtime>.png (Figure 1 remade from "
        "the measurements), and DIR/results.csv. Prints the path of index.html.",
    )
    report.add_argument("--out", metavar="DIR", help="output directory (default: <workdir>/reports)")
    report.add_argument("--platform", nargs="+", metavar="P", help="only these platforms")
    report.add_argument("--runtime", nargs="+", metavar="R", help="only these runtimes")
    onnx_options(report, verb="describe")
    report.set_defaults(handler=cmd_report)
