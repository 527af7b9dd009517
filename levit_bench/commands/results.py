"""`levit-bench results` (list, filter, export CSV) and `levit-bench results merge`."""

from __future__ import annotations

import argparse
from pathlib import Path

from levit_bench.commands.common import print_json, wide_option


def cmd_results(args: argparse.Namespace) -> int:
    from levit_bench import api, views
    from levit_bench.records import cell_id
    from levit_bench.reports.confidence import group_cells
    from levit_bench.reports.tables import write_csv

    filters = dict(model=args.model, runtime=args.runtime, platform=args.platform, status=args.status,
                   host=args.host, run_id=args.run_id, workdir=args.workdir, store=args.store)
    where = api.store_location(args.workdir, args.store)
    if args.capacity:
        searches = api.capacities(**filters)
        if args.json:
            print_json(searches)
        else:
            views.print_capacities(searches, wide=args.wide)
        return 0
    if args.aggregate:
        rows = api.cells(**filters)
        if args.json:
            print_json(rows)
        else:
            views.print_aggregate(rows, title=f"{len(rows)} cells, median over rounds with 95% intervals ({where})",
                                  wide=args.wide)
        return 0
    records = api.records(**filters)
    if args.csv:
        write_csv(records, Path(args.csv))
        views.print_note(f"{len(records)} records written to {args.csv}")
    if args.json:
        print_json(records)
    elif not args.csv:
        unstable = frozenset(cell_id(cell.key) for cell in group_cells(records) if cell.flags)
        views.print_records(records, title=f"{len(records)} stored measurements ({where})", unstable=unstable,
                            wide=args.wide)
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from levit_bench import api, views

    into = args.into or args.store
    imported, present = api.merge(args.other, workdir=args.workdir, store=into)
    views.print_note(f"merged {api.store_location(args.workdir, args.other)} into "
                     f"{api.store_location(args.workdir, into)}: {imported} new rows, {present} already present")
    return 0


def register(commands) -> None:
    from levit_bench.registry import normalise_name

    results = commands.add_parser(
        "results",
        help="list, filter and export stored measurements; merge another store",
        description="List the measurements stored in the results store (filtered), print them "
        "as JSON, or write them as CSV. `results merge SRC [--into DST]` copies one store's rows into "
        "another without duplicating any.",
    )
    results.add_argument("--model", type=normalise_name)
    results.add_argument("--runtime")
    results.add_argument("--platform")
    results.add_argument("--status", choices=("ok", "failed", "emulated"))
    results.add_argument("--host", help="a host fingerprint (see `levit-bench info`)")
    results.add_argument("--run-id")
    results.add_argument("--csv", metavar="FILE",
                         help="write the records as CSV (pandas) instead of a table (with --json, printed too)")
    results.add_argument("--aggregate", action="store_true",
                         help="one line per cell instead of per record: the median images/s over its rounds, "
                         "a 95%% confidence interval (bootstrap over rounds and their samples), and whether "
                         "the cell is flagged unstable (and why)")
    results.add_argument("--capacity", action="store_true",
                         help="the stored capacity searches (`levit-bench capacity`, `sweep --capacity`) instead: "
                         "one line each, with the highest VALID server rate under its bound")
    results.add_argument("--json", action="store_true", help="print the records (or cells) as JSON")
    wide_option(results)
    results.set_defaults(handler=cmd_results)
    actions = results.add_subparsers(dest="results_action", metavar="merge")
    merge = actions.add_parser("merge", help="copy another store's rows in (any two stores, SQLite or PostgreSQL)",
                               description="Import every row of the store SRC (a results.db path, sqlite:///PATH or "
                               "postgresql://USER@HOST/DB) that the store DST lacks (default: this store, "
                               "--store or $LEVIT_BENCH_STORE or <workdir>/results.db), in one transaction: all "
                               "or nothing, and never a row twice.")
    merge.add_argument("other", metavar="SRC")
    merge.add_argument("--into", metavar="DST", help="the store to copy into (default: this store)")
    merge.set_defaults(handler=cmd_merge)
