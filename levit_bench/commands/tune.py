"""`levit-bench tune`: MetaSchedule tuning of a model for a platform's TVM target."""

from __future__ import annotations

import argparse

from levit_bench.commands.common import positive_int, print_json, workdir
from levit_bench.commands.measurements import rpc_options, tvm_options


def cmd_tune(args: argparse.Namespace) -> int:
    from levit_bench import views
    from levit_bench.runners.tvm.tuning import TuningRequest, tune_model

    request = TuningRequest(model=args.model, platform=args.platform, trials=args.trials, batch=args.batch,
                            weights=args.weights, **rpc_options(args))
    with views.ProgressView(f"tuning {args.model}") as progress:
        def on_step(step: str) -> None:
            if step == "tuning":
                progress.start(request.trials, f"tuning {args.model} (extracting tasks)")
            else:
                progress.step(f"{args.model}: {step}")

        def on_progress(state) -> None:
            best = (f"best kernels so far: {state.best_ms:.1f} ms over {state.tasks_measured} tasks"
                    if state.best_ms is not None else "")
            progress.step(f"tuning {args.model}: {state.tasks_done}/{state.tasks} tasks done")
            progress.update(state.trials, info=best)

        summary = tune_model(request, workdir(args), on_step, on_progress)
    if summary["artifact_note"]:
        views.print_note(summary["artifact_note"])
    if args.json:
        print_json(summary)
    else:
        estimate = f", estimated {summary['estimated_ms']:.1f} ms per batch" if summary["estimated_ms"] else ""
        views.print_note(f"{summary['trials']} trials on {summary['tasks']} tasks in {summary['seconds']:.0f} s"
                         f"{estimate}; the database holds {summary['records']} records: {summary['database']}")
    return 0


def register(commands) -> None:
    from levit_bench.runners.tvm.tuning import DEFAULT_TRIALS

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
    tune.add_argument("--trials", type=positive_int, default=DEFAULT_TRIALS, metavar="N",
                      help=f"candidates to measure in this run (default {DEFAULT_TRIALS}: tens of minutes "
                      "for levit_128s on one core; more trials, faster kernels)")
    tune.add_argument("--batch", type=positive_int, metavar="N", help="batch size (default: the platform's)")
    tune.add_argument("--weights", metavar="PATH|URL", help="export these weights first if needed")
    tune.add_argument("--json", action="store_true", help="print the summary as JSON")
    tvm_options(tune)
    tune.set_defaults(handler=cmd_tune)
