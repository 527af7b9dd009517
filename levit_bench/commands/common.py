"""What the command modules share: JSON output and the work directory."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from levit_bench.workdir import resolve_workdir

# what --weights takes, wherever it is taken (models/checkpoints.py reads them all)
WEIGHTS_METAVAR = "PATH|DIR|URL|hf-hub:ORG/NAME[@REV]"


def print_json(payload: object) -> None:
    json.dump(payload, sys.stdout, indent=2)
    sys.stdout.write("\n")


def workdir(args: argparse.Namespace) -> Path:
    return resolve_workdir(args.workdir)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a batch of 0 is refused, never read as 'the default')."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: seconds > 0 (and finite)."""
    value = non_negative_float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def cores(text: str) -> int | str:
    """argparse type: a number of physical cores >= 1, or `all`."""
    return text if text == "all" else positive_int(text)


def cores_options(parser: argparse.ArgumentParser) -> None:
    """--cores N|all and --streams S: the deployment a run measures, beyond the platform's."""
    parser.add_argument("--cores", type=cores, metavar="N|all",
                        help="hold N physical cores (all: every one this process may use), one compute thread "
                        "each, exclusively and pinned; the runtime is given N threads and the record keeps what "
                        "it reports (default: the platform's, 1 on xeon and arm)")
    parser.add_argument("--streams", type=positive_int, metavar="S",
                        help="S requests in flight at once, each on cores/S of the held cores (S must divide "
                        "the cores; default: the platform's, 1)")


def scenario_options(parser: argparse.ArgumentParser) -> None:
    """--scenario and its settings: a measurement under MLPerf LoadGen."""
    from levit_bench.scenarios import settings as scenarios

    group = parser.add_argument_group("MLPerf LoadGen scenarios (instead of the closed-loop protocol)")
    group.add_argument("--scenario", choices=scenarios.SCENARIOS,
                       help="single-stream: one image per query, the next when it is answered (p90 latency); "
                       "multi-stream: --samples-per-query images per query (p99); server: queries arriving "
                       "at --target-qps, batched up to --batch, within --latency-bound-ms; offline: every image "
                       "at once (images/s). The verdict (VALID/INVALID) and LoadGen's logs are kept")
    group.add_argument("--target-qps", type=float, metavar="Q",
                       help="server: the arrival rate (required); offline: the rate to expect (default: measured)")
    group.add_argument("--samples-per-query", type=int, metavar="N",
                       help=f"multi-stream: images per query (default {scenarios.DEFAULT_SAMPLES_PER_QUERY})")
    server_options(group, "server: ")


def server_options(parser, prefix: str = "") -> None:
    """What a LoadGen server run is given beyond its rate (`prefix` says which scenario reads the
    server's own): --latency-bound-ms, --min-duration, --min-queries, --max-wait-ms."""
    from levit_bench.scenarios import settings as scenarios

    parser.add_argument("--latency-bound-ms", type=float, metavar="MS",
                        help=f"{prefix}the bound 99%% of queries must meet (default "
                        f"{scenarios.DEFAULT_LATENCY_BOUND_MS:g})")
    parser.add_argument("--min-duration", type=float, metavar="S",
                        help=f"seconds each LoadGen run lasts at least (default {scenarios.DEFAULT_MIN_DURATION_S:g})")
    parser.add_argument("--min-queries", type=int, metavar="N",
                        help=f"queries each LoadGen run issues at least (default {scenarios.DEFAULT_MIN_QUERIES})")
    parser.add_argument("--max-wait-ms", type=float, metavar="MS",
                        help=f"{prefix}how long a batch waits for more queued images (default "
                        f"{scenarios.DEFAULT_MAX_WAIT_MS:g})")


def scenario_args(args: argparse.Namespace) -> dict:
    return dict(scenario=args.scenario, target_qps=args.target_qps, latency_bound_ms=args.latency_bound_ms,
                samples_per_query=args.samples_per_query, min_duration=args.min_duration,
                min_queries=args.min_queries, max_wait_ms=args.max_wait_ms)


def wide_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wide", action="store_true",
                        help="every column, however wide (default: the columns that fit the terminal, the "
                        "ones that answer the question first)")


def compile_mode_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--compile-mode", choices=("default", "max-autotune"),
                        help="torch:compiled's Inductor mode: default, or max-autotune, which also benchmarks "
                        "Inductor's C++ GEMM templates for every GEMM shape as it compiles (minutes, not "
                        "seconds, once per model and batch; the package is kept and reused)")


def fraction(text: str) -> float:
    """argparse type: a share strictly between 0 and 1 (0.02 is 2%)."""
    value = non_negative_float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (0.02 is 2%), not {text}")
    return value


def onnx_options(parser: argparse.ArgumentParser, verb: str = "measure") -> None:
    """--onnx FILE [--name NAME] [--resolution R]: a user's own ONNX image model."""
    group = parser.add_argument_group("your own ONNX model")
    group.add_argument("--onnx", metavar="FILE",
                       help=f"{verb} this ONNX model (one float32 N x 3 x R x R input): family `user`, "
                       "params and MACs counted from its graph, every runtime's outputs gated against ONNX "
                       "Runtime fp32 (torch and executorch, which run a PyTorch model, cannot run it)")
    group.add_argument("--name", metavar="NAME", help="its name in the store and the report (default: the file's stem)")
    group.add_argument("--resolution", type=positive_int, metavar="R",
                       help="its input size, where the graph leaves height and width symbolic")
