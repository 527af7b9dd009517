"""`levit-bench report`."""

from __future__ import annotations

import argparse
from pathlib import Path

from levit_bench.commands.common import onnx_options, use_onnx, workdir


def cmd_report(args: argparse.Namespace) -> int:
    from levit_bench import views
    from levit_bench.reports.report import build_report
    from levit_bench.reports.store import open_store

    use_onnx(args)  # its name, family and counts from the file, for the points the store holds of it
    out = Path(args.out) if args.out else workdir(args) / "reports"
    with views.ProgressView("report") as progress:
        result = build_report(open_store(workdir(args)), out, args.platform, args.runtime,
                              on_step=lambda step: progress.step(f"report: {step}"))
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
