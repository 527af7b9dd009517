"""MetaSchedule tuning of one or more models for one target, into a database they share.

The protocol (each step is a lever the stock `tune_tasks` set-up leaves on the table):

1. tasks from every model's fused module, each distinct kernel once (`tasks.py`);
2. every new task's default schedule measured and recorded first (`measuring.py`): the
   search starts from it, and the model's time is estimated from the first minute;
3. rounds of `ROUND` candidates, each round given to the task with the most measured time
   per trial already spent on it (time = calls x best kernel time, so trials follow the
   time share, and a kernel that got fast stops drawing them); kernels under `MIN_SHARE`
   of the time keep their default;
4. an evolutionary search sized for small budgets, one cost model learning across rounds;
5. a round starts only if the budget (trials, or wall-clock minutes) allows it.

The database keeps every measured candidate, so Ctrl-C loses nothing and a later `tune`
continues where this one stopped.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from levit_bench.errors import LevitBenchError
from levit_bench.platforms import get_platform
from levit_bench.registry import get_spec
from levit_bench.runners import core_locks
from levit_bench.runners.artifacts import ensure_artifact
from levit_bench.runners.tvm import measuring
from levit_bench.runners.tvm.api import import_tvm, thread_count
from levit_bench.runners.tvm.compile import open_database
from levit_bench.runners.tvm.library import add_tuned_model, database_dir
from levit_bench.runners.tvm.rpc import RpcAddress, resolve_address
from levit_bench.runners.tvm.target import is_cross
from levit_bench.runners.tvm.tasks import Task, estimated_ms, model_tasks

DEFAULT_TRIALS = 320  # levit_128s: ~10 min on one core of a 2-core VM
ROUND = 32  # candidates per round of one task (MetaSchedule's num_trials_per_iter)
MIN_SHARE = 0.005  # a task under this share of the measured time gets no trials
POPULATION = 256  # the evolutionary search's population (MetaSchedule's default: 512)
GENETIC_ITERATIONS = 2  # (default 4): on 2 cores the search must not outlast the measuring
FIRST_ROUND_S = 45.0  # a guess of a full round's length before one has been timed
MIN_ROUND = 8  # a time budget never starts a round smaller than this
TIME_MARGIN = 0.9  # a round is sized to fill at most this share of the time left


@dataclass(frozen=True)
class Budget:
    """When tuning stops: after `trials` candidates or `seconds` of wall time, whichever first."""

    trials: int | None = None
    seconds: float | None = None

    def round_size(self, trials: int, elapsed: float, full_round_s: float) -> int:
        """How many candidates the next round may take (0: stop here): `ROUND`, or fewer when
        fewer trials are left, or when less time is left than a full round of the chosen task
        takes (`full_round_s`, with a margin); a round too small to learn from is not started."""
        size = ROUND if self.trials is None else min(ROUND, self.trials - trials)
        if self.seconds is not None:
            fits = int(ROUND * TIME_MARGIN * (self.seconds - elapsed) / max(full_round_s, 1e-3))
            size = min(size, fits if fits >= MIN_ROUND else 0)
        return max(size, 0)


@dataclass
class TuningProgress:
    tasks: int
    phase: str = "defaults"  # defaults (measuring the default schedules), then tuning
    defaults_measured: int = 0
    trials: int = 0  # candidates measured in this run
    elapsed_s: float = 0.0
    estimated_ms: dict[str, float | None] = field(default_factory=dict)  # model -> kernels' sum
    start_ms: dict[str, float | None] = field(default_factory=dict)  # the same when this run started


@dataclass(frozen=True)
class TuningResult:
    tasks: int
    tuned_tasks: int  # tasks that drew trials
    trials: int
    seconds: float
    estimated_ms: dict[str, float | None]
    start_ms: dict[str, float | None]
    records: int


def _best_seconds(database, tasks: list[Task]) -> list[float | None]:
    """Each task's best recorded kernel time (None: none recorded)."""
    best: list[float | None] = []
    for task in tasks:
        top = database.get_top_k(database.commit_workload(task.workload), 1)
        best.append(_mean(top[0].run_secs) if top else None)
    return best


def _mean(run_secs) -> float | None:
    values = [float(s) for s in run_secs or ()]
    return sum(values) / len(values) if values and all(math.isfinite(v) for v in values) else None


def next_task(tasks: list[Task], best: list[float | None], trials: list[int], exhausted: set[int]) -> int | None:
    """The task whose measured time (calls x best kernel time) is largest per round already
    spent on it; None when no task holds `MIN_SHARE` of the time."""
    times = [task.weight * b if b is not None else 0.0 for task, b in zip(tasks, best)]
    total = sum(times)
    candidates = [i for i, t in enumerate(times) if i not in exhausted and total and t / total >= MIN_SHARE]
    if not candidates:
        return None
    return max(candidates, key=lambda i: times[i] / (1 + trials[i] / ROUND))


def _context(task: Task):
    """A task's search: MetaSchedule's per-task log files are not written (their logger set-up
    also prints every round's table on stdout); the progress bar tells what they would."""
    from tvm.s_tir import meta_schedule as ms

    return ms.TuneContext(
        mod=task.workload, target=task.target, space_generator="post-order-apply",
        search_strategy=ms.search_strategy.EvolutionarySearch(
            population_size=POPULATION, genetic_num_iters=GENETIC_ITERATIONS),
        task_name=task.name, logger=logging.getLogger(f"{__name__}.{task.name}"), num_threads=1,
    ).clone()


def _round_recorder(times: list[float]):
    """A measure callback keeping the run times of the round's candidates that ran."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

    @derived_object
    class Recorder(PyMeasureCallback):
        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
            for result in runner_results:
                mean = _mean(result.run_secs) if result.error_msg is None else None
                times.append(mean if mean is not None else math.inf)

    return Recorder()


def tune(tasks: list[Task], database_dir: Path, budget: Budget, rpc: RpcAddress | None = None,
         cross: bool = False, on_progress: Callable[[TuningProgress], None] = lambda progress: None) -> TuningResult:
    """Measure the tasks' default schedules, then spend the budget on rounds of search."""
    import_tvm()
    started = time.perf_counter()
    models = list(dict.fromkeys(model for task in tasks for model in task.calls))
    progress = TuningProgress(tasks=len(tasks))
    database = open_database(database_dir)
    search_core, runner_core = measuring.cores()
    build = measuring.builder(search_core, cross)
    run = measuring.runner(rpc, runner_core if rpc is None else None)

    def report(best: list[float | None]) -> None:
        progress.elapsed_s = time.perf_counter() - started
        progress.estimated_ms = {m: estimated_ms(tasks, best, m) for m in models}
        on_progress(progress)

    def defaults_go_on(done: int) -> bool:  # no estimate yet: it needs every task measured
        progress.defaults_measured = done
        progress.elapsed_s = time.perf_counter() - started
        on_progress(progress)
        return budget.seconds is None or time.perf_counter() - started < budget.seconds

    with measuring.pinned(search_core):
        measuring.measure_defaults(tasks, database, build, run, keep_going=defaults_go_on)
        best = _best_seconds(database, tasks)
        progress.start_ms = {m: estimated_ms(tasks, best, m) for m in models}
        progress.phase = "tuning"
        report(best)
        trials = [0] * len(tasks)
        full_round_s: dict[int, float] = {}  # per task: a full round's wall time, as last measured
        rounds = _Rounds(database, build, run)
        while (chosen := next_task(tasks, best, trials, rounds.exhausted)) is not None:
            # a round's length depends on its task (a convolution's candidates build for
            # seconds, a transpose's in a blink): predicted from the task's own last round
            expected = full_round_s.get(chosen, max(full_round_s.values(), default=FIRST_ROUND_S))
            size = budget.round_size(progress.trials, time.perf_counter() - started, expected)
            if size == 0:
                break
            round_started = time.perf_counter()
            times = rounds.search(tasks[chosen], chosen, size)
            full_round_s[chosen] = (time.perf_counter() - round_started) * ROUND / size
            trials[chosen] += len(times)
            progress.trials += len(times)
            finite = [t for t in times if math.isfinite(t)]
            if finite and (best[chosen] is None or min(finite) < best[chosen]):
                best[chosen] = min(finite)
            report(best)
    return TuningResult(
        tasks=len(tasks), tuned_tasks=sum(1 for t in trials if t), trials=progress.trials,
        seconds=time.perf_counter() - started, estimated_ms=progress.estimated_ms,
        start_ms=progress.start_ms, records=len(database),
    )


class _Rounds:
    """Rounds of MetaSchedule search, one task each: the tasks' searches and one cost model
    (learning from every round) kept across rounds."""

    def __init__(self, database, builder, runner):
        from tvm.s_tir import meta_schedule as ms

        self.database, self.builder, self.runner = database, builder, runner
        self.cost_model = ms.cost_model.XGBModel(num_tuning_cores=1)
        self.contexts: dict[int, object] = {}
        self.exhausted: set[int] = set()  # tasks whose search found no new candidate

    def search(self, task: Task, index: int, size: int) -> list[float]:
        """Measure `size` new candidates of `task`: their mean run times (inf: failed)."""
        from tvm.s_tir import meta_schedule as ms

        if index not in self.contexts:
            self.contexts[index] = _context(task)
        times: list[float] = []
        ms.tune.tune_tasks(
            tasks=[self.contexts[index]], task_weights=[float(task.weight)],
            work_dir=tempfile.gettempdir(),  # unused: the database is given
            max_trials_global=size, max_trials_per_task=size, num_trials_per_iter=size,
            builder=self.builder, runner=self.runner, database=self.database, cost_model=self.cost_model,
            measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"), _round_recorder(times)],
            task_scheduler="round-robin",
        )
        if not times:
            self.exhausted.add(index)
        return times


@dataclass(frozen=True)
class TuningRequest:
    """What `levit-bench tune` asks for, checked when made."""

    models: tuple[str, ...]
    platform: str
    trials: int | None = None  # None with no minutes: DEFAULT_TRIALS
    minutes: float | None = None
    batch: int | None = None  # None: the platform's
    weights: str | None = None
    rpc: str | None = None  # where candidates are measured for arm: a device (as for runs)
    rpc_key: str | None = None
    mcpu: str | None = None

    def __post_init__(self):
        if not self.models:
            raise LevitBenchError("give at least one model to tune")
        if len(set(self.models)) != len(self.models):
            raise LevitBenchError(f"a model is named twice: {' '.join(self.models)}")
        if self.weights is not None and len(self.models) > 1:
            raise LevitBenchError("--weights names one model's weights: tune one model with it")
        if self.trials is not None and self.trials < 1:
            raise LevitBenchError(f"--trials must be at least 1, not {self.trials}")
        if self.minutes is not None and not (self.minutes > 0 and math.isfinite(self.minutes)):
            raise LevitBenchError(f"--minutes must be a positive number, not {self.minutes:g}")
        if self.batch is not None and self.batch < 1:
            raise LevitBenchError(f"the batch must be a positive integer, not {self.batch}")
        if self.rpc == "emulator":
            raise LevitBenchError("tune --rpc emulator is refused: emulated timings would rank schedules by "
                                  "QEMU's speed, not the device's; tune on a real board (--rpc HOST:PORT)")
        for model in self.models:
            get_spec(model)  # an unknown name is refused before anything runs

    @property
    def budget(self) -> Budget:
        trials = self.trials if self.trials is not None or self.minutes is not None else DEFAULT_TRIALS
        return Budget(trials=trials, seconds=self.minutes * 60 if self.minutes is not None else None)


def _quiet_meta_schedule() -> None:
    """MetaSchedule's loggers print every round's task table at INFO; the progress bar says it."""
    import tvm.s_tir.meta_schedule  # noqa: F401 - creates its loggers

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("tvm.s_tir.meta_schedule"):
            logging.getLogger(name).setLevel(logging.WARNING)


def tune_models(request: TuningRequest, workdir: Path, on_step: Callable[[str], None] = lambda step: None,
                on_progress: Callable[[TuningProgress], None] = lambda progress: None) -> dict:
    """Tune `request.models` for their platform's target into the target's shared database.

    Finds (or exports) each artifact, measures candidates as runs measure (on the platform's
    threads, here or on the device), lists the models in the database's `models.json`, and
    returns a summary: trials, tasks, wall time, each model's estimated time per batch
    (default schedules, then tuned), and where the database is.
    """
    from levit_bench.runners.tvm.runner import platform_target

    platform = get_platform(request.platform)
    address = resolve_address(request.rpc, request.rpc_key)
    if platform.base == "arm" and address is None:
        raise LevitBenchError("tuning for arm measures candidates on the device: give --rpc or --rpc-tracker")
    if address is not None:
        address.check_reachable()
    threads = platform.threads if platform.threads != "all" else core_locks.usable_physical_cores()
    target = platform_target(platform.base, threads, request.mcpu)
    batch = request.batch or platform.default_batch or 1
    artifacts = {}
    for model in request.models:
        on_step(f"artifact {model}")
        artifacts[model] = ensure_artifact(workdir, get_spec(model).name, batch, request.weights, on_step)
    database = database_dir(workdir, target)
    tvm = import_tvm()
    _quiet_meta_schedule()
    on_step("extracting tasks")
    tasks = model_tasks({m: a.onnx_path for m, a in artifacts.items()}, tvm.target.Target(target))
    result = None
    with thread_count(threads):  # candidates are measured as runs are: on the platform's threads
        on_step("tuning")
        started = time.perf_counter()
        try:
            result = tune(tasks, database, request.budget, address, is_cross(target), on_progress)
        finally:  # Ctrl-C too: what was measured is in the database, and the models are listed
            for model in request.models:
                add_tuned_model(database, model, batch, result.trials if result else 0,
                                time.perf_counter() - started)
    return {
        "models": list(request.models), "target": target, "batch": batch, "trials": result.trials,
        "tasks": result.tasks, "tuned_tasks": result.tuned_tasks, "seconds": round(result.seconds, 1),
        "estimated_ms": result.estimated_ms, "start_ms": result.start_ms, "database": str(database),
        "records": result.records, "artifact_notes": [a.note for a in artifacts.values() if a.note],
    }
