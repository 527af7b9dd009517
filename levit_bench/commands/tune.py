"""`levit-bench tune`: MetaSchedule tuning of models for a platform's TVM target."""

from __future__ import annotations

import argparse

from levit_bench.commands.common import WEIGHTS_METAVAR, onnx_options, positive_int, print_json, workdir
from levit_bench.commands.measurements import rpc_options, tvm_options


def positive_minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of minutes") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of minutes, not {text}")
    return value


def _estimates(estimated: dict, at_start: dict) -> str:
    parts = []
    for model, now in estimated.items():
        if now is not None:
            before = at_start.get(model)
            parts.append(f"{model} {now:.1f} ms" + (f" (at start {before:.1f})" if before else ""))
    return ", ".join(parts)


def cmd_tune(args: argparse.Namespace) -> int:
    from levit_bench import views
    from levit_bench.api import use_onnx, use_platforms
    from levit_bench.errors import LevitBenchError
    from levit_bench.runners.tvm.tuning import TuningRequest, tune_models

    use_platforms(args.platforms_file, args.workdir)
    onnx_model, args.batch = use_onnx(args.onnx, args.name, args.resolution, args.batch, args.weights)
    args.models = [*(args.models or ()), *([onnx_model] if onnx_model else [])]
    if not args.models:
        raise LevitBenchError("name the models to tune: --models NAME ... and/or --onnx FILE")
    request = TuningRequest(models=tuple(args.models), platform=args.platform, trials=args.trials,
                            minutes=args.minutes, batch=args.batch, weights=args.weights, **rpc_options(args))
    budget = request.budget
    names = " ".join(args.models)
    with views.ProgressView(f"tuning {names}") as progress:
        def on_step(step: str) -> None:
            progress.step(f"{names}: {step}")

        def on_progress(state) -> None:
            estimate = _estimates(state.estimated_ms, state.start_ms)
            if state.phase == "defaults":
                progress.step(f"{names}: measuring default schedules ({state.defaults_measured}/{state.tasks} tasks)")
                return
            if budget.seconds is not None:  # the bar is the time budget
                if progress.total != int(budget.seconds):
                    progress.start(int(budget.seconds), f"tuning {names} (seconds)")
                progress.update(min(int(state.elapsed_s), int(budget.seconds)),
                                info=f"{state.trials} trials; {estimate}")
            else:
                if progress.total != budget.trials:
                    progress.start(budget.trials, f"tuning {names} (trials)")
                progress.update(min(state.trials, budget.trials), info=estimate)

        summary = tune_models(request, workdir(args), on_step, on_progress)
    for note in summary["artifact_notes"]:
        views.print_note(note)
    if args.json:
        print_json(summary)
    else:
        views.print_note(
            f"{summary['trials']} trials on {summary['tuned_tasks']} of {summary['tasks']} tasks in "
            f"{summary['seconds']:.0f} s; kernels' estimate per batch: "
            f"{_estimates(summary['estimated_ms'], summary['start_ms']) or 'not measured'}; "
            f"the database holds {summary['records']} records: {summary['database']}")
    return 0


def register(commands) -> None:
    from levit_bench.runners.tvm.tuning import DEFAULT_TRIALS, MIN_SHARE

    tune = commands.add_parser(
        "tune",
        help="tune models' TVM kernels with MetaSchedule for a platform; runs use the result",
        description="Tune the models' kernels for the platform's TVM target. Each distinct kernel is one "
        "task however many models call it. Every task's default schedule is measured first; then rounds "
        "of 32 candidates go to the tasks holding the most measured time per trial already spent "
        f"(tasks under {MIN_SHARE:.1%} of the time keep their default). Candidates are built on one core "
        "and timed on the other (or on a device over RPC). The database is shared by every model tuned "
        "for the target, in <workdir>/tvm/tuning/, keyed by target and TVM version: a later tune "
        "continues it, and `run --runtime tvm` of a tuned model uses it (the record says tuned). "
        "Ctrl-C keeps every measured candidate.",
    )
    tune.add_argument("--model", "--models", dest="models", nargs="+", metavar="NAME",
                      help="one or more models: their shared kernels are tuned once (and/or --onnx FILE)")
    tune.add_argument("--platform", required=True, help="xeon (this host's CPU) or arm (aarch64+NEON, over RPC)")
    tune.add_argument("--trials", type=positive_int, metavar="N",
                      help=f"candidates to measure in this run (default {DEFAULT_TRIALS} when --minutes "
                      "is not given); with --minutes, whichever ends first")
    tune.add_argument("--minutes", type=positive_minutes, metavar="M",
                      help="wall-clock budget of the tuning, default schedules' measurement included: a "
                      "round starts only if it should end in time")
    tune.add_argument("--batch", type=positive_int, metavar="N", help="batch size (default: the platform's)")
    tune.add_argument("--weights", metavar=WEIGHTS_METAVAR, help="export these weights first if needed (one model)")
    tune.add_argument("--json", action="store_true", help="print the summary as JSON")
    tvm_options(tune)
    onnx_options(tune, verb="tune")
    tune.set_defaults(handler=cmd_tune)
