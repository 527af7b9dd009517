"""`levit-bench run` and `levit-bench sweep`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from levit_bench.commands.common import (WEIGHTS_METAVAR, compile_mode_option, cores_options, fraction,
                                         non_negative_float,
                                         onnx_options, positive_float, positive_int, print_json, scenario_args,
                                         scenario_options, wide_option)

if TYPE_CHECKING:
    from levit_bench.api import Measured



def _request_options(parser: argparse.ArgumentParser) -> None:
    from levit_bench.runners.core_locks import DEFAULT_WAIT_TIMEOUT_S
    from levit_bench.runners.measure import PROTOCOLS
    from levit_bench.runtimes import all_precisions

    parser.add_argument("--platform", required=True,
                        help="xeon (x86-64, 1 thread, batch 16), arm / graviton (aarch64 NEON, 1 thread, "
                        "batch 16), gpu (CUDA, mixed precision, largest power-of-two batch), or one of yours "
                        "(see `levit-bench platforms`)")
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
    cores_options(parser)
    parser.add_argument("--json", action="store_true", help="print the stored records as JSON")
    wide_option(parser)


def _rounds_option(parser: argparse.ArgumentParser, default: int) -> None:
    from levit_bench.runners.sweep import MAX_ROUNDS

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
    """The tvm device options given on the command line, as the API takes them (`rpc`: the device,
    or the tracker that `rpc_key` is registered with)."""
    from levit_bench.errors import LevitBenchError

    if bool(args.rpc_tracker) != bool(args.rpc_key):
        raise LevitBenchError("--rpc-tracker HOST:PORT and --rpc-key KEY go together")
    return {"rpc": args.rpc or args.rpc_tracker, "rpc_key": args.rpc_key, "mcpu": args.mcpu}


def _settings(args: argparse.Namespace) -> dict:
    """What `run` and `sweep` share, as api.run / api.sweep take it."""
    return dict(onnx=args.onnx, name=args.name, resolution=args.resolution, batch=args.batch,
                precision=args.precision, protocol=args.protocol, weights=args.weights, rounds=args.rounds,
                target=args.target, max_rounds=args.max_rounds, run_id=args.run_id, wait_timeout=args.wait_timeout,
                cores=args.cores, streams=args.streams, platforms_file=args.platforms_file, workdir=args.workdir,
                store=args.store, progress=True, **rpc_options(args))


def _print_outcome(measured: Measured, args: argparse.Namespace, title: str) -> int:
    """The records as a table (or JSON), the notes they carry, then one error line per failed cell."""
    from levit_bench import views

    if args.json:
        print_json(list(measured))
    else:
        views.print_records(measured, title=title, wide=args.wide)
        if measured.skipped:
            views.print_note(f"{len(measured.skipped)} cell-rounds already measured, skipped (--force to redo): "
                             f"{', '.join(dict.fromkeys(measured.skipped))}")
        if measured.still_wide:
            views.print_note(f"{len(measured.still_wide)} cells still wider than ±{args.target:.1%} after "
                             f"{args.max_rounds} rounds (see `results --aggregate`): {', '.join(measured.still_wide)}")
    for record in measured:
        label = f"{record['model']} on {record['runtime']}"
        if record.get("artifact_note"):
            views.print_note(record["artifact_note"])
        if record.get("noisy"):
            views.print_note(f"{label} is flagged noisy: {record.get('noisy_reason')}")
        if record["status"] == "emulated":
            views.print_note(f"{record['model']}: emulated, so only its outputs were checked "
                             f"(max |diff| {record['max_abs_diff']:.2e} from PyTorch); no speed stored")
    for label, error in measured.refused:
        views.print_error(f"{label} not measured (nothing stored): {error}")
    for label, error in measured.failed:
        views.print_error(f"{label} failed: {error}")
    return 1 if measured.failed or measured.refused else 0


def cmd_run(args: argparse.Namespace) -> int:
    from levit_bench import api

    measured = api.run(args.model, args.runtime, args.platform, mode=args.mode, compile_mode=args.compile_mode,
                       **scenario_args(args),
                       **_settings(args))
    return _print_outcome(measured, args, "Measurements" + (f" ({measured.run_id})" if args.rounds > 1 else ""))


def _print_capacities(measured: Measured, args: argparse.Namespace) -> int:
    """A capacity sweep's searches as a table (or, with its runs, JSON), then one error line per
    search that failed or cell refused."""
    from levit_bench import views

    if args.json:
        print_json({"capacities": measured.capacities, "runs": list(measured)})
    else:
        views.print_capacities(measured.capacities, wide=args.wide)
        views.print_note(f"{len(measured)} LoadGen runs stored (`levit-bench results` lists them)")
    failed = [c for c in measured.capacities if c["status"] != "ok"]
    for record in failed:
        views.print_error(f"{record['model']} / {record['runtime']}: {record['error']}")
    for label, error in measured.refused:
        views.print_error(f"{label} not measured: {error}")
    return 1 if failed or measured.refused else 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from levit_bench import api, views

    measured = api.sweep(args.platform, args.models, args.runtimes, compile_mode=args.compile_mode,
                         force=args.force, cell_timeout=args.cell_timeout,
                         profile=args.profile, capacity=args.capacity, cluster=args.cluster, hosts=args.hosts,
                         **scenario_args(args), **_settings(args))
    if args.capacity:
        return _print_capacities(measured, args)
    status = _print_outcome(measured, args, f"Sweep on {args.platform} ({measured.run_id})")
    if args.profile and not args.json:
        profiled = len(measured.profiles)
        views.print_note(f"{profiled} of {profiled + len(measured.profile_failures)} cells profiled and stored "
                         "(`levit-bench report` draws them)")
        for failure in measured.profile_failures:
            views.print_error(f"profile of {failure}")
    return status


def register(commands) -> None:
    from levit_bench.runners.sweep import DEFAULT_CELL_TIMEOUT_S
    from levit_bench.runtimes import RUNTIMES, default_sweep

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
                     help="torch: traced fused model (default, as the paper), eager fused, the "
                     "eager unfused model (the paper's baseline), or compiled (AOTInductor with freezing, "
                     "compiled once into the work directory; compiled-max-autotune: see --compile-mode); "
                     "tvm: tuned (the work directory's MetaSchedule database; the default when there is "
                     "one) or untuned (TVM's default schedules)")
    compile_mode_option(run)
    _request_options(run)
    _rounds_option(run, 1)
    tvm_options(run)
    onnx_options(run)
    scenario_options(run)
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
    sweep.add_argument("--runtimes", nargs="+", metavar="RUNTIME",
                       help=f"default: {' '.join(default_sweep())}; torch alone is traced, torch:eager, "
                       "torch:unfused, torch:compiled and torch:compiled-max-autotune select torch modes; "
                       "tvm is untuned, plus tuned where `levit-bench tune` left a database "
                       "(tvm:tuned, tvm:untuned select one)")
    compile_mode_option(sweep)
    sweep.add_argument("--force", action="store_true", help="measure cells that are already stored")
    sweep.add_argument("--cell-timeout", type=positive_float, default=DEFAULT_CELL_TIMEOUT_S, metavar="S",
                       help=f"seconds before a cell is stopped and stored as failed (default {DEFAULT_CELL_TIMEOUT_S:g})")
    sweep.add_argument("--profile", action="store_true",
                       help="then profile every cell measured ok once (as `levit-bench profile`) and store it")
    sweep.add_argument("--capacity", action="store_true",
                       help="instead of measuring, search every cell's server capacity under --latency-bound-ms "
                       "once per round (as `levit-bench capacity`), every run in a process of its own")
    sweep.add_argument("--cluster", metavar="HEAD:PORT",
                       help="measure on the hosts of this Ray cluster (`levit-bench worker start`): every cell on every "
                       "host that measures the platform, each cell-round placed by Ray on a free core there, the "
                       "records stored here; HEAD:PORT from one of its hosts, ray://HEAD:10001 from outside it")
    sweep.add_argument("--hosts", nargs="+", metavar="LABEL",
                       help="with --cluster: only these hosts, by label (default: all; see `levit-bench cluster status`)")
    _request_options(sweep)
    _rounds_option(sweep, 3)
    tvm_options(sweep)
    onnx_options(sweep)
    scenario_options(sweep)
    sweep.set_defaults(handler=cmd_sweep)
