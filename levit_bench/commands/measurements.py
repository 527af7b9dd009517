"""`levit-bench run` and `levit-bench sweep`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from levit_bench.commands.common import (WEIGHTS_METAVAR, calibrated_peak, fraction, non_negative_float,
                                         onnx_options, positive_int, print_json, use_onnx, workdir)
from levit_bench.errors import LevitBenchError

if TYPE_CHECKING:
    from levit_bench.reports.store import ResultsStore
    from levit_bench.runners.sweep import MoreRounds

MAX_ROUNDS = 12
MIN_ROUNDS_FOR_TARGET = 3


def _request_options(parser: argparse.ArgumentParser) -> None:
    from levit_bench.runners.core_locks import DEFAULT_WAIT_TIMEOUT_S
    from levit_bench.runners.measure import PROTOCOLS
    from levit_bench.runtimes import all_precisions

    parser.add_argument("--platform", required=True,
                        help="xeon (x86-64, 1 thread, batch 16), arm / graviton (aarch64 NEON, 1 thread, "
                        "batch 16) or gpu (CUDA, mixed precision, largest power-of-two batch)")
    parser.add_argument("--batch", type=positive_int, metavar="N", help="batch size (default: the platform's)")
    parser.add_argument("--precision", choices=all_precisions(),
                        help="default: the platform's (fp32 on CPUs, mixed on gpu); recorded either way. int8 "
                        "(onnxruntime, openvino) measures the export quantized for that runtime: the one "
                        "`levit-bench quantize` made, else quantized first on synthetic images")
    parser.add_argument("--protocol", default="default", choices=list(PROTOCOLS),
                        help="default: >=3 warm-up calls and 1 s, then >=10 calls and 3 s; paper: 10 s "
                        "warm-up and 60 s of measurement as the official speed_test; smoke: a functional check")
    parser.add_argument("--weights", metavar=WEIGHTS_METAVAR, help="measure these weights (exported if needed)")
    parser.add_argument("--run-id", help="group rows under this id (default: a new one)")
    parser.add_argument("--wait-timeout", type=non_negative_float, default=DEFAULT_WAIT_TIMEOUT_S, metavar="S",
                        help="a measurement holds its pinned core exclusively; when another measurement "
                        "holds every core this run may use, wait up to S seconds for one "
                        f"(default {DEFAULT_WAIT_TIMEOUT_S:g}), then give up without storing a row")
    parser.add_argument("--json", action="store_true", help="print the stored records as JSON")


def _rounds_option(parser: argparse.ArgumentParser, default: int) -> None:
    parser.add_argument("--rounds", type=positive_int, default=default, metavar="N",
                        help=f"measure every cell N times (default {default}), each time in a fresh process, "
                        "the cells in a new random order each round; `results --aggregate` and `compare` "
                        "give the median over rounds with a 95%% confidence interval")
    parser.add_argument("--target", type=fraction, metavar="H",
                        help="then keep running whole rounds (every cell, a new order each) while any cell's 95%% "
                        "interval is wider than ±H of its median (0.02: ±2%%), up to --max-rounds; needs "
                        "--rounds 3 or more")
    parser.add_argument("--max-rounds", type=positive_int, default=MAX_ROUNDS, metavar="M",
                        help=f"with --target, at most M rounds per cell (default {MAX_ROUNDS})")


def more_rounds(args: argparse.Namespace, store: ResultsStore) -> MoreRounds | None:
    """--target as the sweep's rule for more rounds: all cells run again while one's interval is wider."""
    from levit_bench.reports.confidence import estimate
    from levit_bench.runners.sweep import MoreRounds

    if args.target is None:
        return None

    def wanted(key: dict) -> bool:
        rounds = store.ok_records(key)
        return bool(rounds) and estimate(rounds).half_width > args.target

    return MoreRounds(args.max_rounds, wanted)


def tvm_options(parser: argparse.ArgumentParser) -> None:
    rpc = parser.add_mutually_exclusive_group()
    rpc.add_argument("--rpc", metavar="HOST:PORT",
                     help="tvm: run on the device whose TVM rpc_server listens there (start it with "
                     "TVM_NUM_THREADS=1); `emulator` is levit-bench's QEMU ARM emulator (outputs "
                     "checked, timings not stored)")
    rpc.add_argument("--rpc-tracker", metavar="HOST:PORT", help="tvm: a TVM RPC tracker; with --rpc-key")
    parser.add_argument("--rpc-key", metavar="KEY", help="tvm: the device key registered with the tracker")
    parser.add_argument("--mcpu", metavar="CPU",
                        help="tvm: the LLVM CPU to compile for (e.g. neoverse-n1 for Graviton2; default: "
                        "this host's CPU on xeon, generic aarch64+NEON on arm)")


def rpc_options(args: argparse.Namespace) -> dict:
    """The tvm device options given on the command line (--rpc or --rpc-tracker, --rpc-key, --mcpu)."""
    from levit_bench.errors import LevitBenchError

    if bool(args.rpc_tracker) != bool(args.rpc_key):
        raise LevitBenchError("--rpc-tracker HOST:PORT and --rpc-key KEY go together")
    given = {"rpc": args.rpc or args.rpc_tracker, "rpc_key": args.rpc_key, "mcpu": args.mcpu}
    return {k: v for k, v in given.items() if v is not None}


def _models(names: list[str] | None, onnx_model: str | None = None) -> list[str]:
    """The named models (default: every built-in and registered one), or with --onnx, it after
    the named ones."""
    from levit_bench.registry import get_spec, model_names

    if onnx_model:
        return [*(get_spec(n).name for n in names or ()), onnx_model]
    return [get_spec(n).name for n in names] if names else [n for n in model_names() if not get_spec(n).onnx]


def _print_outcome(records: list[dict], failed: list[tuple[str, str]], as_json: bool, title: str) -> int:
    from levit_bench import views

    if as_json:
        print_json(records)
    else:
        views.print_records(records, title=title)
    for record in records:
        label = f"{record['model']} on {record['runtime']}"
        if record.get("artifact_note"):
            views.print_note(record["artifact_note"])
        if record.get("noisy"):
            views.print_note(f"{label} is flagged noisy: {record.get('noisy_reason')}")
        if record["status"] == "emulated":
            views.print_note(f"{record['model']}: emulated, so only its outputs were checked "
                             f"(max |diff| {record['max_abs_diff']:.2e} from PyTorch); no speed stored")
    for label, error in failed:
        views.print_error(f"{label} failed: {error}")
    return 1 if failed else 0


def cmd_run(args: argparse.Namespace) -> int:
    from levit_bench import views
    from levit_bench.reports.store import open_store
    from levit_bench.runners.session import RunRequest, new_run_id, run_cell
    from levit_bench.runners.sweep import Cell

    onnx_model = use_onnx(args)
    if onnx_model and args.model:
        raise LevitBenchError("--model and --onnx each name what to measure: give one")
    models = _models(args.model, onnx_model)
    if args.rounds > 1 or args.target:  # several rounds: every round in a process of its own, as a sweep's
        cells = [Cell(name, args.runtime, args.mode) for name in models]
        return _sweep_rounds(args, cells, force=True, title="Measurements")
    options = rpc_options(args)
    run_id = args.run_id or new_run_id()
    store = None  # opened with the first record: a refused request leaves no file behind
    records = []
    with views.ProgressView("starting") as progress:
        for name in models:
            request = RunRequest(name, args.runtime, args.platform, batch=args.batch, precision=args.precision,
                                 mode=args.mode, protocol=args.protocol, weights=args.weights, run_id=run_id,
                                 runtime_options=options, wait_timeout_s=args.wait_timeout)
            records.append(run_cell(request, workdir(args),
                                    on_step=lambda step, name=name: progress.step(f"{name} on {args.runtime}: {step}"),
                                    on_wait=lambda message, name=name: progress.log(f"{name}: {message}")))
            store = store or open_store(workdir(args))
            store.insert_or_keep(records[-1])
    failed = [(f"{r['model']} on {r['runtime']}", r["error"]) for r in records if r["status"] == "failed"]
    return _print_outcome(records, failed, args.json, "Measurements")


def cmd_sweep(args: argparse.Namespace) -> int:
    from levit_bench.runners.sweep import plan

    cells = plan(_models(args.models, use_onnx(args)), args.runtimes, workdir(args))
    return _sweep_rounds(args, cells, force=args.force, title=f"Sweep on {args.platform}")


def _sweep_rounds(args: argparse.Namespace, cells: list, force: bool, title: str) -> int:
    """Measure `cells` for `args.rounds` rounds, each cell-round in a worker process, storing every record."""
    from levit_bench import views
    from levit_bench.platforms import get_platform
    from levit_bench.reports.store import open_store
    from levit_bench.runners.session import new_run_id
    from levit_bench.runners.sweep import check_rounds, run_sweep, sweep_requests

    check_rounds(args.rounds, args.max_rounds if args.target is not None else None)
    if args.target is not None and args.rounds < MIN_ROUNDS_FOR_TARGET:
        raise LevitBenchError(f"--target needs --rounds {MIN_ROUNDS_FOR_TARGET} or more: fewer rounds cannot "
                              "show how much a cell moves between processes")
    run_id = args.run_id or new_run_id()
    requests = sweep_requests(cells, args.platform, workdir(args), run_id, batch=args.batch,
                              precision=args.precision, protocol=args.protocol, weights=args.weights,
                              runtime_options=rpc_options(args), wait_timeout_s=args.wait_timeout)
    if args.protocol != "smoke" and get_platform(args.platform).device == "cpu" \
            and not (args.rpc or args.rpc_tracker):
        calibrated_peak()  # once per host, before the first cell: every record's peak_fraction reads it
    store = open_store(workdir(args))
    more = more_rounds(args, store)
    timeout = {"cell_timeout_s": args.cell_timeout} if hasattr(args, "cell_timeout") else {}
    with views.ProgressView("sweep", total=len(cells) * args.rounds) as progress:
        def on_cell(cell, state):
            if state == "running":
                progress.step(cell.label)
            else:
                progress.advance()

        def on_round(number, count, wanting):
            if number > args.rounds:
                progress.extend(count)
                progress.update(info=f"round {number}: every cell again, {wanting} wider than ±{args.target:.1%}")

        outcomes = run_sweep(requests, workdir(args), done_rounds=store.count_ok, on_record=store.insert_or_keep,
                             force=force, on_cell=on_cell, rounds=args.rounds, more=more, on_round=on_round,
                             **timeout)
    skipped = [o.cell.label for o in outcomes if o.status == "skipped"]
    if skipped and not args.json:
        views.print_note(f"{len(skipped)} cell-rounds already measured, skipped (--force to redo): "
                         f"{', '.join(dict.fromkeys(skipped))}")
    if more is not None and not args.json:
        wide = _still_wide(outcomes, more)
        if wide:
            views.print_note(f"{len(wide)} cells still wider than ±{args.target:.1%} after {args.max_rounds} "
                             f"rounds (see `results --aggregate`): {', '.join(wide)}")
    failed = [(o.cell.label, o.error) for o in outcomes if o.status == "failed"]
    status = _print_outcome([o.record for o in outcomes if o.record], failed, args.json, f"{title} ({run_id})")
    if getattr(args, "profile", False):
        _profile_cells(requests, outcomes, store, args)
    return status


def _profile_cells(requests: list, outcomes: list, store: ResultsStore, args: argparse.Namespace) -> None:
    """`sweep --profile`: every cell measured ok (now or before) profiled once, each in a process of
    its own, the profiles stored; a cell its runtime cannot profile is named, not fatal."""
    import dataclasses

    from levit_bench import views
    from levit_bench.runners.sweep import Cell, run_isolated

    batches = {o.cell: o.record["batch"] for o in outcomes if o.status == "ok"}
    measured = {o.cell for o in outcomes if o.status in ("ok", "skipped")}
    todo = [dataclasses.replace(r, batch=batches.get(cell, r.batch)) for r in requests
            if (cell := Cell(r.model, r.runtime, r.mode)) in measured]
    failures = []
    with views.ProgressView("profile", total=len(todo)) as progress:
        for request in todo:
            label = Cell(request.model, request.runtime, request.mode).label
            progress.step(f"profile {label}")
            profile, error = run_isolated(request, workdir(args), args.cell_timeout, task="profile")
            if profile is None:
                failures.append(f"{label}: {error}")
            else:
                store.insert_or_keep(profile, table="profiles")
            progress.advance()
    if not args.json:
        views.print_note(f"{len(todo) - len(failures)} of {len(todo)} cells profiled and stored "
                         "(`levit-bench report` draws them)")
        for failure in failures:
            views.print_error(f"profile of {failure}")


def _still_wide(outcomes: list, more) -> list[str]:
    """The cells whose last record the rule for more rounds still wants."""
    from levit_bench.records import CELL_KEY

    last = {o.cell.label: o.record for o in outcomes if o.record and o.record["status"] == "ok"}
    return [label for label, record in last.items() if more.wanted({k: record.get(k) for k in CELL_KEY})]


def register(commands) -> None:
    from levit_bench.runners.sweep import DEFAULT_CELL_TIMEOUT_S
    from levit_bench.runtimes import RUNTIMES

    run = commands.add_parser(
        "run",
        help="measure models on one runtime and platform, store and print the results",
        description="Measure each model (default: all) on one runtime and platform: export the "
        "artifact if it is missing, load it (timed), time the first call, warm up, measure under "
        "the protocol, compare the output with the unfused PyTorch model, and store the record "
        "in <workdir>/results.db. A failure is stored too, with its reason.",
    )
    run.add_argument("--runtime", required=True, choices=list(RUNTIMES))
    run.add_argument("--model", nargs="+", metavar="NAME", help="models to measure (default: all)")
    run.add_argument("--mode", choices=sorted({m for r in RUNTIMES.values() for m in r.modes}),
                     help="torch: traced fused model (default, as the paper), eager fused, or the "
                     "eager unfused model (the paper's baseline); tvm: tuned (the work directory's "
                     "MetaSchedule database; the default when there is one) or untuned (TVM's default schedules)")
    _request_options(run)
    _rounds_option(run, 1)
    tvm_options(run)
    onnx_options(run)
    run.set_defaults(handler=cmd_run)

    sweep = commands.add_parser(
        "sweep",
        help="measure the whole models x runtimes matrix, resumably",
        description="Measure every model x runtime cell on one platform, --rounds times (default 3), the "
        "cells in a new random order each round. Each cell-round runs in its own process: a crash, an "
        "unsupported op or a timeout is stored as a failed row and the sweep goes on. Rounds already "
        "measured with the same artifact, runtime version, protocol and host are skipped unless --force. "
        "On a CPU platform the host is calibrated first, once (see `calibrate`).",
    )
    sweep.add_argument("--models", nargs="+", metavar="NAME",
                       help="default: every registered model (with --onnx: that model only)")
    sweep.add_argument("--runtimes", nargs="+", metavar="RUNTIME", default=list(RUNTIMES),
                       help=f"default: {' '.join(RUNTIMES)}; torch:eager and torch:unfused select torch "
                       "modes; tvm is untuned, plus tuned where `levit-bench tune` left a database "
                       "(tvm:tuned, tvm:untuned select one)")
    sweep.add_argument("--force", action="store_true", help="measure cells that are already stored")
    sweep.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT_S, metavar="S",
                       help=f"seconds before a cell is stopped and stored as failed (default {DEFAULT_CELL_TIMEOUT_S:g})")
    sweep.add_argument("--profile", action="store_true",
                       help="then profile every cell measured ok once (as `levit-bench profile`) and store it")
    _request_options(sweep)
    _rounds_option(sweep, 3)
    tvm_options(sweep)
    onnx_options(sweep)
    sweep.set_defaults(handler=cmd_sweep)
