"""How tuning measures candidates: a builder and a runner that never share a core, and the
default schedules measured first, as every task's first record.

On a 2-core machine MetaSchedule's stock set-up builds with two workers while a candidate is
being timed, so timings include the builder's load. Here the search and the builder (one
worker) run on one core and the runner on another; with one core they share it, and a
measurement waits for the build anyway.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from levit_bench.runners.tvm.api import import_tvm
from levit_bench.runners.tvm.compile import CROSS_COMPILER
from levit_bench.runners.tvm.rpc import RpcAddress, connect
from levit_bench.runners.tvm.schedules import default_schedule
from levit_bench.runners.tvm.tasks import Task

# Each candidate is run for at least this long (MetaSchedule repeats it as often as needed), so
# a short kernel's time is a mean over many calls rather than one call's noise. Timed so (warm
# caches), tuned levit_128s's kernels summed to 54.6 ms; inside the model they took 56.7 ms.
MIN_REPEAT_MS = 100


def cores() -> tuple[int, int | None]:
    """(the search and builder's core, the runner's core); None: only one core is ours."""
    mine = sorted(os.sched_getaffinity(0))
    return mine[0], (mine[1] if len(mine) > 1 else None)


@contextlib.contextmanager
def pinned(core: int) -> Iterator[None]:
    """This process (the search) on `core` inside, its former cores restored on the way out."""
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


def build_candidate(mod, target, _params):
    """MetaSchedule's build, without importing the tensor intrinsics (not used on CPU): the stock
    builder imports `tvm.s_tir.tensor_intrin` in every worker, about 30 s on a small machine,
    past its timeout, so every candidate would fail and tuning would silently learn nothing."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return tvm_build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def export_cross_candidate(module) -> str:
    """A candidate as an aarch64 shared library the device can load without a compiler."""
    path = Path(tempfile.mkdtemp()) / "candidate.so"
    module.export_library(str(path), cc=CROSS_COMPILER)
    return str(path)


def builder(core: int, cross: bool):
    from tvm.s_tir import meta_schedule as ms

    return ms.builder.LocalBuilder(
        max_workers=1, timeout_sec=60, f_build=build_candidate,
        f_export=export_cross_candidate if cross else None,
        initializer=functools.partial(os.sched_setaffinity, 0, {core}),
    )


def runner(address: RpcAddress | None, core: int | None):
    """Candidates timed here on `core` (None: wherever), or on the device behind `address`."""
    from tvm.s_tir import meta_schedule as ms

    evaluator = ms.runner.EvaluatorConfig(number=1, repeat=1, min_repeat_ms=MIN_REPEAT_MS)
    if address is None:
        pin = functools.partial(os.sched_setaffinity, 0, {core}) if core is not None else None
        return ms.runner.LocalRunner(timeout_sec=30, evaluator_config=evaluator, initializer=pin)

    def create_session(_config):
        return connect(address)

    return ms.runner.RPCRunner(
        rpc_config=ms.runner.RPCConfig(session_timeout_sec=120),
        evaluator_config=evaluator, f_create_session=create_session, max_workers=1,
    )


def measure_defaults(tasks: list[Task], database, build, run, chunk: int = 8,
                     keep_going: Callable[[int], bool] = lambda done: True) -> int:
    """Record each new task's default schedule (its plain loop nest where no rule applies) with
    its measured time, so that tuning starts from it and a tuned build never picks a slower
    schedule than the default. Tasks the database already holds records for are skipped.
    Stops between chunks when `keep_going(done)` says so (asked once more at the end, as a
    progress report). Returns how many were measured."""
    import_tvm()
    from tvm import s_tir
    from tvm.s_tir import meta_schedule as ms

    pending = []
    for task in tasks:
        workload = database.commit_workload(task.workload)
        if not database.get_top_k(workload, 1):
            schedule = default_schedule(task.workload["main"], task.target) or s_tir.Schedule(task.workload)
            pending.append((task, workload, schedule))
    done = 0
    for start in range(0, len(pending), chunk):
        if not keep_going(done):
            break
        batch = pending[start:start + chunk]
        built = build.build([ms.builder.BuilderInput(s.mod, t.target) for t, _, s in batch])
        inputs = [(item, result) for item, result in zip(batch, built) if result.artifact_path]
        futures = run.run([ms.runner.RunnerInput(result.artifact_path, "cpu",  # every target here is an llvm CPU
                                                 ms.arg_info.ArgInfo.from_entry_func(schedule.mod))
                           for (task, _, schedule), result in inputs])
        for ((task, workload, schedule), result), future in zip(inputs, futures):
            outcome = future.result()
            if outcome.run_secs and outcome.error_msg is None:
                database.commit_tuning_record(ms.database.TuningRecord(
                    schedule.trace, workload, [float(s) for s in outcome.run_secs], task.target,
                    ms.arg_info.ArgInfo.from_entry_func(schedule.mod)))
            shutil.rmtree(os.path.dirname(result.artifact_path), ignore_errors=True)
        done += len(batch)
    keep_going(done)
    return done
