"""MetaSchedule tuning of an exported model for one target, into a database that persists.

Two traps of the stock set-up are avoided here: MetaSchedule's default builder imports
`tvm.s_tir.tensor_intrin` in every build worker (about 30 s on a small machine, past the
builder's 30 s timeout, so every candidate fails and tuning silently learns nothing), and
tasks must come from the same fused module the build later applies the database to.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from levit_bench.errors import LevitBenchError
from levit_bench.platforms import get_platform
from levit_bench.registry import get_spec
from levit_bench.runners.artifacts import ensure_artifact

from levit_bench.runners.tvm.api import import_tvm, thread_count
from levit_bench.runners.tvm.compile import CROSS_COMPILER, open_database, relax_module
from levit_bench.runners.tvm.library import database_dir
from levit_bench.runners.tvm.rpc import RpcAddress, connect, resolve_address
from levit_bench.runners.tvm.target import is_cross

DEFAULT_TRIALS = 200  # levit_128s: ~10-20 min on one core of a 2-core VM
TRIALS_PER_ROUND = 16
# Tasks are tuned heaviest first until they hold this share of the model's floating-point
# work; the rest (reshapes, transposes, small element-wise kernels) keep default schedules,
# where trials would buy almost nothing.
FLOP_SHARE = 0.995


def build_candidate(mod, target, _params):
    """MetaSchedule's build, without importing the tensor intrinsics (not used on CPU)."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return tvm_build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def export_cross_candidate(module) -> str:
    """A candidate as an aarch64 shared library the device can load without a compiler."""
    path = Path(tempfile.mkdtemp()) / "candidate.so"
    module.export_library(str(path), cc=CROSS_COMPILER)
    return str(path)


@dataclass
class TuningProgress:
    tasks: int
    tasks_done: int = 0  # tasks whose trial budget is spent
    trials: int = 0  # candidates measured in this run
    tasks_measured: int = 0  # tasks with at least one candidate that ran
    best_ms: float | None = None  # sum over measured tasks of occurrences x their best kernel time

    def as_dict(self) -> dict:
        return {"tasks": self.tasks, "tasks_done": self.tasks_done, "tasks_measured": self.tasks_measured,
                "trials": self.trials, "best_ms": self.best_ms}


@dataclass(frozen=True)
class TuningResult:
    tasks: int
    trials: int
    seconds: float
    best_ms: float | None
    records: int


def _progress_callback(weights: list[float], per_task: int, progress: TuningProgress,
                       on_progress: Callable[[TuningProgress], None]):
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback
    from tvm.ir.utils import derived_object

    best = [math.inf] * len(weights)
    trials = [0] * len(weights)

    @derived_object
    class Progress(PyMeasureCallback):
        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
            for result in runner_results:
                if result.run_secs:
                    seconds = sum(float(s) for s in result.run_secs) / len(result.run_secs)
                    best[task_id] = min(best[task_id], seconds)
            trials[task_id] += len(runner_results)
            progress.trials += len(runner_results)
            progress.tasks_done = sum(1 for t in trials if t >= per_task)
            measured = [(w, b) for w, b in zip(weights, best) if math.isfinite(b)]
            progress.tasks_measured = len(measured)
            progress.best_ms = sum(w * b for w, b in measured) * 1e3 if measured else None
            on_progress(progress)

    return Progress()


def heavy_tasks(extracted: list, share: float = FLOP_SHARE) -> list:
    """The tasks worth trials: heaviest (FLOPs x occurrences) first, up to `share` of the work."""
    from tvm.s_tir.analysis import estimate_tir_flops

    work = [(estimate_tir_flops(task.dispatched[0]) * task.weight, task) for task in extracted]
    work = [(w, task) for w, task in work if w > task.weight]  # a FLOP count of 1: data movement
    work.sort(key=lambda pair: -pair[0])
    total, kept, running = sum(w for w, _ in work), [], 0.0
    for w, task in work:
        if running >= share * total:
            break
        kept.append(task)
        running += w
    return kept


def _runner(address: RpcAddress | None):
    from tvm.s_tir import meta_schedule as ms

    evaluator = ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=50)
    if address is None:
        return ms.runner.LocalRunner(timeout_sec=60, evaluator_config=evaluator)

    def create_session(_config):
        return connect(address)

    return ms.runner.RPCRunner(
        rpc_config=ms.runner.RPCConfig(session_timeout_sec=120),
        evaluator_config=evaluator, f_create_session=create_session, max_workers=1,
    )


def tune(onnx_path: Path, target: dict, database_dir: Path, trials: int,
         rpc: RpcAddress | None = None,
         on_progress: Callable[[TuningProgress], None] = lambda progress: None) -> TuningResult:
    """Spend `trials` more candidates on the model's tasks; the database keeps every one.

    A later call with the same database continues: MetaSchedule's evolutionary search starts
    from the best schedules already measured.
    """
    tvm = import_tvm()
    from tvm.s_tir import meta_schedule as ms

    tvm_target = tvm.target.Target(target)
    with tvm_target:
        mod, _ = relax_module(onnx_path)
    extracted = heavy_tasks(ms.relax_integration.extract_tasks(mod, tvm_target))
    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(extracted, str(database_dir / "logs"))
    per_task = max(1, trials // len(contexts))  # every task gets trials when the budget allows
    progress = TuningProgress(tasks=len(contexts))
    builder = ms.builder.LocalBuilder(
        max_workers=2, timeout_sec=120, f_build=build_candidate,
        f_export=export_cross_candidate if is_cross(target) else None,
    )
    database = open_database(database_dir)
    callbacks = [*ms.measure_callback.MeasureCallback.create("default"),
                 _progress_callback([float(w) for w in weights], per_task, progress, on_progress)]
    started = time.perf_counter()
    ms.tune.tune_tasks(
        tasks=contexts, task_weights=weights, work_dir=str(database_dir / "logs"),
        max_trials_global=trials, max_trials_per_task=per_task,
        num_trials_per_iter=min(TRIALS_PER_ROUND, per_task),
        builder=builder, runner=_runner(rpc), database=database,
        measure_callbacks=callbacks,
    )
    return TuningResult(tasks=len(contexts), trials=progress.trials, seconds=time.perf_counter() - started,
                        best_ms=progress.best_ms, records=len(database))


@dataclass(frozen=True)
class TuningRequest:
    """What `levit-bench tune` asks for, checked when made."""

    model: str
    platform: str
    trials: int = DEFAULT_TRIALS
    batch: int | None = None  # None: the platform's
    weights: str | None = None
    rpc: str | None = None  # where candidates are measured for arm: a device (as for runs)
    rpc_key: str | None = None
    mcpu: str | None = None

    def __post_init__(self):
        if self.trials < 1:
            raise LevitBenchError(f"--trials must be at least 1, not {self.trials}")
        if self.batch is not None and self.batch < 1:
            raise LevitBenchError(f"the batch must be a positive integer, not {self.batch}")
        if self.rpc == "emulator":
            raise LevitBenchError("tune --rpc emulator is refused: emulated timings would rank schedules by "
                                  "QEMU's speed, not the device's; tune on a real board (--rpc HOST:PORT)")


def tune_model(request: TuningRequest, workdir: Path, on_step: Callable[[str], None] = lambda step: None,
               on_progress: Callable[[TuningProgress], None] = lambda progress: None) -> dict:
    """Tune `request.model` for its platform's target into the work directory's database.

    Finds (or exports) the artifact, measures candidates as runs measure (on the platform's
    threads, here or on the device), and returns a summary: trials, tasks, wall time, the
    estimated time per batch, and where the database is.
    """
    from levit_bench.runners.tvm.runner import platform_target

    spec = get_spec(request.model)
    platform = get_platform(request.platform)
    address = resolve_address(request.rpc, request.rpc_key)
    if platform.name == "arm" and address is None:
        raise LevitBenchError("tuning for arm measures candidates on the device: give --rpc or --rpc-tracker")
    if address is not None:
        address.check_reachable()
    target = platform_target(platform.name, platform.threads, request.mcpu)
    batch = request.batch or platform.default_batch or 1
    on_step("artifact")
    artifact = ensure_artifact(workdir, spec.name, batch, request.weights, on_step)
    database = database_dir(workdir, spec.name, target)
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
    with thread_count(platform.threads):  # candidates are measured as runs are: on the platform's threads
        on_step("tuning")
        result = tune(artifact.onnx_path, target, database, request.trials, address, on_progress)
    return {
        "model": spec.name, "target": target, "batch": batch, "trials": result.trials, "tasks": result.tasks,
        "seconds": round(result.seconds, 1), "estimated_ms": result.best_ms, "database": str(database),
        "records": result.records, "artifact_note": artifact.note,
    }
