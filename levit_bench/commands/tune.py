"""`levit-bench tune`: MetaSchedule tuning of a model for a platform's TVM target."""

from __future__ import annotations

import argparse
import logging
import os

from levit_bench.commands.common import positive_int, print_json, workdir
from levit_bench.commands.measurements import check_rpc


def cmd_tune(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from levit_bench import views
    from levit_bench.console import stderr_console
    from levit_bench.errors import LevitBenchError
    from levit_bench.registry import get_spec
    from levit_bench.runners.artifacts import ensure_artifact
    from levit_bench.platforms import get_platform
    from levit_bench.runners.session import resolve_rpc

    if args.trials < 1:
        raise LevitBenchError("--trials must be at least 1")
    check_rpc(args)
    spec = get_spec(args.model)
    platform = get_platform(args.platform)
    if platform.threads:  # candidates are measured as runs are: on the platform's threads
        os.environ["TVM_NUM_THREADS"] = str(platform.threads)
    from levit_bench.runners import tvm_tuning
    from levit_bench.runners.tvm_library import database_dir
    from levit_bench.runners.tvm_runner import platform_target

    address = resolve_rpc(args.rpc or args.rpc_tracker, args.rpc_key)
    if platform.name == "arm" and address is None:
        raise LevitBenchError("tuning for arm measures candidates on the device: give --rpc or --rpc-tracker")
    if address is not None:
        address.check_reachable()
    target = platform_target(platform.name, platform.threads, args.mcpu)
    batch = args.batch or platform.default_batch or 1
    work = workdir(args)
    console = stderr_console()
    with console.status("artifact") as status:
        artifact = ensure_artifact(work, spec.name, batch, args.weights,
                                   on_step=lambda step: status.update(f"{spec.name}: {step}"))
    if artifact.note:
        views.print_note(artifact.note)
    database = database_dir(work, spec.name, target)
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[best]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task(f"tuning {spec.name} (extracting tasks)", total=args.trials, best="")

        def on_progress(state: tvm_tuning.TuningProgress) -> None:
            best = (f"best kernels so far: {state.best_ms:.1f} ms over {state.tasks_measured} tasks"
                    if state.best_ms is not None else "")
            progress.update(bar, completed=state.trials, best=best,
                            description=f"tuning {spec.name}: {state.tasks_done}/{state.tasks} tasks done")

        result = tvm_tuning.tune(artifact.onnx_path, target, database, args.trials, address, on_progress)
    summary = {
        "model": spec.name, "target": target, "batch": batch, "trials": result.trials, "tasks": result.tasks,
        "seconds": round(result.seconds, 1), "estimated_ms": result.best_ms, "database": str(database),
        "records": result.records,
    }
    if args.json:
        print_json(summary)
    else:
        estimate = f", estimated {result.best_ms:.1f} ms per batch" if result.best_ms else ""
        views.print_note(f"{result.trials} trials on {result.tasks} tasks in {result.seconds:.0f} s{estimate}; "
                         f"the database holds {result.records} records: {database}")
    return 0


def register(commands) -> None:
    from levit_bench.commands.measurements import tvm_options
    from levit_bench.runners.tvm_tuning import DEFAULT_TRIALS

    tune = commands.add_parser(
        "tune",
        help="tune a model's TVM kernels with MetaSchedule for a platform; runs use the result",
        description="Run MetaSchedule on the model's heaviest kernels (the tasks holding 99.5%% of "
        "its floating-point work) for the platform's TVM target, measuring candidates on one "
        "thread here or on a device over RPC. The database is kept in <workdir>/tvm/tuning/, keyed "
        "by model, target and TVM version: a later tune continues it, and `run --runtime tvm` uses "
        "it (the record says tuned). Ctrl-C keeps every measured candidate.",
    )
    tune.add_argument("--model", required=True, metavar="NAME")
    tune.add_argument("--platform", required=True, help="xeon (this host's CPU) or arm (aarch64+NEON, over RPC)")
    tune.add_argument("--trials", type=int, default=DEFAULT_TRIALS, metavar="N",
                      help=f"candidates to measure in this run (default {DEFAULT_TRIALS}: tens of minutes "
                      "for levit_128s on one core; more trials, faster kernels)")
    tune.add_argument("--batch", type=positive_int, metavar="N", help="batch size (default: the platform's)")
    tune.add_argument("--weights", metavar="PATH|URL", help="export these weights first if needed")
    tune.add_argument("--json", action="store_true", help="print the summary as JSON")
    tvm_options(tune)
    tune.set_defaults(handler=cmd_tune)
