"""`levit-bench capacity`: the highest server rate a cell serves within a latency bound."""

from __future__ import annotations

import argparse

from levit_bench.commands.common import (WEIGHTS_METAVAR, cores_options, non_negative_float, onnx_options,
                                         positive_int, print_json, server_options, wide_option)


def cmd_capacity(args: argparse.Namespace) -> int:
    from levit_bench import api, views

    record = api.capacity(args.model, args.runtime, args.platform, latency_bound_ms=args.latency_bound_ms,
                          onnx=args.onnx, name=args.name, resolution=args.resolution, batch=args.batch,
                          precision=args.precision, mode=args.mode, weights=args.weights, cores=args.cores,
                          streams=args.streams, min_duration=args.min_duration, min_queries=args.min_queries,
                          max_wait_ms=args.max_wait_ms, tolerance=args.tolerance, wait_timeout=args.wait_timeout,
                          run_id=args.run_id, platforms_file=args.platforms_file, workdir=args.workdir,
                          store=args.store, progress=True)
    if args.json:
        print_json(record)
    else:
        views.print_probes(record)
        views.print_capacities([record], wide=args.wide)
    if record["status"] != "ok":
        views.print_error(f"{record['model']} / {record['runtime']}: {record['error']}")
        return 1
    if record["capacity_qps"] is None:
        views.print_note(f"no rate down to {min(p['target_qps'] for p in record['probes']):.4g} QPS met the bound")
    return 0


def register(commands) -> None:
    from levit_bench.registry import normalise_name
    from levit_bench.runners.core_locks import DEFAULT_WAIT_TIMEOUT_S
    from levit_bench.runtimes import RUNTIMES, all_precisions
    from levit_bench.scenarios import capacity

    parser = commands.add_parser(
        "capacity",
        help="the highest server rate (QPS) one model serves on a runtime within a p99 latency bound",
        description="Run LoadGen's offline scenario for the throughput, then its server scenario (Poisson "
        "arrivals, batched up to --batch) at rates bracketing the capacity, bisecting until the highest "
        f"VALID rate and the lowest INVALID one are within ±{capacity.TOLERANCE:.0%} (--tolerance). Every run is "
        "stored as a measurement (`results` lists them); the search is stored with the probes it took "
        "(`results --capacity`).",
    )
    parser.add_argument("--model", type=normalise_name, metavar="NAME", help="a registered model (or --onnx FILE)")
    parser.add_argument("--runtime", required=True, choices=list(RUNTIMES))
    parser.add_argument("--platform", required=True, help="xeon, arm, gpu or one of yours (as `run`)")
    parser.add_argument("--batch", type=positive_int, metavar="N",
                        help="the most images one call takes (default: the platform's)")
    parser.add_argument("--mode", choices=sorted({m for r in RUNTIMES.values() for m in r.modes}),
                        help="the runtime's mode (as `run`)")
    parser.add_argument("--precision", choices=all_precisions(), help="as `run`")
    parser.add_argument("--weights", metavar=WEIGHTS_METAVAR, help="serve these weights (exported if needed)")
    cores_options(parser)
    server_options(parser)
    parser.add_argument("--tolerance", type=float, metavar="F",
                        help=f"stop when the bracket is within this share of its VALID end (default {capacity.TOLERANCE})")
    parser.add_argument("--wait-timeout", type=non_negative_float, default=DEFAULT_WAIT_TIMEOUT_S, metavar="S",
                        help="how long to wait for free cores (as `run`)")
    parser.add_argument("--run-id", help="group its runs under this id (default: a new one)")
    parser.add_argument("--json", action="store_true", help="print the capacity record (with its probes) as JSON")
    wide_option(parser)
    onnx_options(parser, verb="serve")
    parser.set_defaults(handler=cmd_capacity)
