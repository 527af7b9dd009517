"""`levit-bench compare`: B against A, cell by cell, with intervals and verdicts."""

from __future__ import annotations

import argparse

from levit_bench.commands.common import non_negative_float, print_json, wide_option


def cmd_compare(args: argparse.Namespace) -> int:
    from levit_bench import api, views

    rows = api.comparison(args.by, args.a, args.b, models=args.model, platforms=args.platform,
                          min_effect=args.min_effect, workdir=args.workdir, store=args.store)
    if args.json:
        print_json(rows)
    else:
        views.print_comparison(rows, args.by, wide=args.wide)
    slower = [r for r in rows if r["verdict"] == "slower"]
    return 1 if args.fail_on_slower and slower else 0


def register(commands) -> None:
    from levit_bench.reports.compare import DEFAULT_MIN_EFFECT, DIMENSIONS

    compare = commands.add_parser(
        "compare",
        help="is B faster than A? every cell measured on both sides, with a 95%% interval and a verdict",
        description="Pick two sides along one dimension: two runtimes (torch, torch:eager, onnxruntime, "
        "tvm:tuned, ...), two run ids, two host fingerprints, two precisions, two runtime versions, two core "
        "counts (--by cores 1 2: the scaling), two stream counts, or two scenarios (closed-loop is the protocol's; "
        "single-stream, multi-stream, server, offline are LoadGen's). "
        "For every cell measured on both sides and equal in everything else, print images/s B / A with "
        "its 95%% confidence interval (bootstrap over each side's rounds and their samples) and a "
        "verdict: same (the interval holds 1, or the effect is below --min-effect), faster or slower. "
        "Cells flagged unstable say why. Exits 0 unless --fail-on-slower finds a slower cell.",
    )
    compare.add_argument("--by", required=True, choices=list(DIMENSIONS), help="the dimension A and B differ in")
    compare.add_argument("a", metavar="A", help="the baseline side")
    compare.add_argument("b", metavar="B", help="the side compared with it")
    compare.add_argument("--model", nargs="+", metavar="NAME", help="only these models")
    compare.add_argument("--platform", nargs="+", metavar="P", help="only these platforms")
    compare.add_argument("--min-effect", type=non_negative_float, default=DEFAULT_MIN_EFFECT, metavar="F",
                         help=f"a ratio within 1 +- F is `same` even when its interval excludes 1 "
                         f"(default {DEFAULT_MIN_EFFECT:g})")
    compare.add_argument("--fail-on-slower", action="store_true",
                         help="exit 1 when any cell is slower (a regression check for CI)")
    compare.add_argument("--json", action="store_true",
                         help="print the rows as JSON (model, a, b, ratio, ratio_ci, verdict, ...)")
    wide_option(compare)
    compare.set_defaults(handler=cmd_compare)
