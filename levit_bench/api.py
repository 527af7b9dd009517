"""levit-bench from Python: measure, read, compare and report, exactly as the commands do.

Each command is a thin layer over one of these functions (arguments parsed, one call, its
result printed), so a script or a notebook gets what the command line gets: the same checks,
the same records stored in the same store, and the same one-line errors, raised as
`LevitBenchError` (and its subclasses) instead of printed.

    from levit_bench import api

    records = api.run("levit_128s", "onnxruntime", "xeon", protocol="smoke")  # list of dicts, stored
    api.sweep("xeon", models=["levit_128s"], runtimes=["torch", "onnxruntime"], rounds=3)
    api.results(model="levit_128s")              # pandas DataFrame, one row per stored measurement
    api.aggregate()                              # one row per cell, images/s with its 95% interval
    api.compare("runtime", "torch", "onnxruntime")  # B / A per cell, interval and verdict
    api.report("out")                            # Path of out/index.html

`workdir` is where artifacts go (default: $LEVIT_BENCH_HOME, else ./levit-bench-out); `store`
is the results store file (default: <workdir>/results.db). `progress=True` shows the command
line's progress display on stderr.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from levit_bench.errors import LevitBenchError
from levit_bench.runners.core_locks import DEFAULT_WAIT_TIMEOUT_S
from levit_bench.runners.sweep import DEFAULT_CELL_TIMEOUT_S, MAX_ROUNDS
from levit_bench.workdir import resolve_workdir

if TYPE_CHECKING:
    import pandas as pd

    from levit_bench.reports.store import ResultsStore
    from levit_bench.runners.session import RunRequest
    from levit_bench.runners.sweep import Cell, MoreRounds

__all__ = ["LevitBenchError", "Measured", "aggregate", "calibrate", "capacities", "capacity", "capacity_settings",
           "cells", "compare", "comparison", "merge",
           "more_rounds", "platforms", "profile", "records", "report", "report_result", "results", "run",
           "scenario_settings", "store_path", "sweep", "use_onnx", "use_platforms"]

PathLike = str | os.PathLike


class Measured(list):
    """The records a `run` or `sweep` stored, in the order measured (a list of dicts), and what
    else it found: the cell-rounds it `skipped` (stored already: a cell's label once per round),
    the cells `refused` before anything was measured ((label, reason): nothing stored), those
    `still_wide` after the last round allowed by `target`, with `sweep(profile=True)` the
    profiles stored and those that failed, and with `sweep(capacity=True)` the capacity searches."""

    def __init__(self, records: Sequence[dict] = (), run_id: str | None = None):
        super().__init__(records)
        self.run_id = run_id
        self.skipped: list[str] = []
        self.refused: list[tuple[str, str]] = []
        self.still_wide: list[str] = []
        self.profiles: list[dict] = []
        self.capacities: list[dict] = []
        self.profile_failures: list[str] = []

    @property
    def failed(self) -> list[tuple[str, str]]:
        """(label, reason) of every record stored as failed (labelled as the sweep's cells are)."""
        from levit_bench.runners.sweep import Cell

        return [(Cell(r["model"], r["runtime"], r.get("mode")).label, r["error"]) for r in self
                if r["status"] == "failed"]


def _paths(workdir: PathLike | None, store: PathLike | None) -> tuple[Path, Path]:
    from levit_bench.reports.store import DB_NAME

    work = resolve_workdir(workdir)
    return work, Path(store).expanduser() if store is not None else work / DB_NAME


def store_path(workdir: PathLike | None = None, store: PathLike | None = None) -> Path:
    """The results store file: `store`, else <workdir>/results.db."""
    return _paths(workdir, store)[1]


def _reading(workdir: PathLike | None, store: PathLike | None) -> ResultsStore:
    """The store to read: a missing one reads as empty, and is not created."""
    from levit_bench.reports.store import ResultsStore

    return ResultsStore(_paths(workdir, store)[1], create=False)


def _progress(description: str, show: bool, total: int | None = None):
    from levit_bench.views import ProgressView

    return ProgressView(description, total=total, disable=not show)


def calibrate(force: bool = False, progress: bool = False) -> dict:
    """This host's calibration (FMA peak, GEMM per runtime, copy bandwidth), measured once per host
    and cached (`levit-bench calibrate`)."""
    from levit_bench.runners.calibrate import cached, calibrate as measure

    if not force and (found := cached()) is not None:
        return found
    with _progress("calibrating this host (once; cached)", progress) as view:
        return measure(on_step=lambda step: view.step(f"calibrating: {step}"), force=force)


def use_onnx(onnx: PathLike | None, name: str | None = None, resolution: int | None = None,
             batch: int | None = None, weights: str | None = None) -> tuple[str | None, int | None]:
    """Register a user's ONNX model in this process: (its model name, the batch to measure it at),
    or (None, batch) without `onnx`. A graph with a static batch runs at that batch only."""
    from levit_bench.exporters.onnx_facts import inspect_onnx
    from levit_bench.exporters.onnx_import import model_name, register

    if onnx is None:
        if name or resolution:
            raise LevitBenchError("--name and --resolution describe an --onnx FILE; give one")
        return None, batch
    if weights:
        raise LevitBenchError("--weights does not apply to --onnx: the ONNX file holds its own weights")
    info = inspect_onnx(Path(onnx), resolution)
    registered = model_name(info.path, name)
    register(info, registered)
    if info.batch is not None:
        if batch not in (None, info.batch):
            raise LevitBenchError(f"{Path(onnx).name} has a fixed batch of {info.batch}, not --batch "
                                  f"{batch}: export it with a symbolic batch to measure others")
        batch = info.batch
    return registered, batch


def use_platforms(platforms_file: PathLike | None = None, workdir: PathLike | None = None) -> list[dict]:
    """Register your own platforms in this process: those of <workdir>/platforms.toml when it
    exists, then those of `platforms_file` (which must exist); their definitions, as data."""
    from levit_bench.platforms import PLATFORMS_FILE, load_platforms

    found = load_platforms(resolve_workdir(workdir) / PLATFORMS_FILE, required=False)
    if platforms_file is not None:
        found += load_platforms(Path(platforms_file).expanduser())
    return [p.as_dict() for p in found]


def platforms(platforms_file: PathLike | None = None, workdir: PathLike | None = None) -> list[dict]:
    """Every platform a run may name: the built-in ones, then yours (`use_platforms`), as data
    (`levit-bench platforms`)."""
    from levit_bench.platforms import all_platforms

    use_platforms(platforms_file, workdir)
    return [p.as_dict() for p in all_platforms()]


def _listed(names: str | Sequence[str] | None) -> list[str] | None:
    """One name or several, as a list (None: not given)."""
    return [names] if isinstance(names, str) else list(names) if names else None


def _model_names(names: str | Sequence[str] | None, onnx_model: str | None) -> list[str]:
    """The named models (default: every built-in and registered one), or with --onnx, it after
    the named ones."""
    from levit_bench.registry import get_spec, model_names

    names = _listed(names) or []
    if onnx_model:
        return [*(get_spec(n).name for n in names), onnx_model]
    return [get_spec(n).name for n in names] if names else [n for n in model_names() if not get_spec(n).onnx]


def _device_options(rpc: str | None, rpc_key: str | None, mcpu: str | None) -> dict:
    """The tvm device options given: `rpc` is HOST:PORT of the device's RPC server, or of an RPC
    tracker when `rpc_key` names the device registered with it; `mcpu` the LLVM CPU."""
    given = {"rpc": rpc, "rpc_key": rpc_key, "mcpu": mcpu}
    return {k: v for k, v in given.items() if v is not None}


def more_rounds(target: float | None, max_rounds: int, store: ResultsStore) -> MoreRounds | None:
    """`target` as a sweep's rule for more rounds: every cell runs again while one's 95% interval
    is wider than ±target of its median, up to `max_rounds`."""
    from levit_bench.reports.confidence import estimate
    from levit_bench.runners.sweep import MoreRounds

    if target is None:
        return None

    def wanted(key: dict) -> bool:
        rounds = store.ok_records(key)
        return bool(rounds) and estimate(rounds).half_width > target

    return MoreRounds(max_rounds, wanted)


def run(model: str | Sequence[str] | None, runtime: str, platform: str, *,
        onnx: PathLike | None = None, name: str | None = None, resolution: int | None = None,
        batch: int | None = None, precision: str | None = None, mode: str | None = None,
        protocol: str = "default", weights: str | None = None, rounds: int = 1, target: float | None = None,
        max_rounds: int = MAX_ROUNDS, cell_timeout: float = DEFAULT_CELL_TIMEOUT_S, run_id: str | None = None,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT_S, cores: int | str | None = None, streams: int | None = None,
        scenario: str | None = None, target_qps: float | None = None, latency_bound_ms: float | None = None,
        samples_per_query: int | None = None, min_duration: float | None = None, min_queries: int | None = None,
        max_wait_ms: float | None = None,
        rpc: str | None = None, rpc_key: str | None = None, mcpu: str | None = None,
        platforms_file: PathLike | None = None, workdir: PathLike | None = None, store: PathLike | None = None,
        progress: bool = False) -> Measured:
    """Measure `model` (a name, several, or None: every model; or `onnx`, a file of yours) on one
    runtime and platform, store every record and return them (`levit-bench run`).

    One round runs in this process; with `rounds` > 1 or a `target` every round runs in a
    process of its own, as a sweep's (each stopped after `cell_timeout` seconds). `cores` (a
    number, or "all") and `streams` override the platform's: the run holds that many physical
    cores, one thread each, split between `streams` requests in flight. A request that cannot be
    measured (an unknown name, a precision the runtime lacks, weights that cannot be read, more
    cores than the host has, a store that cannot take the record, no free cores within
    `wait_timeout` seconds) raises before any record exists. `scenario` (single-stream,
    multi-stream, server, offline, with its settings: `scenario_settings`) measures under MLPerf
    LoadGen instead of the protocol, one round in this process.
    """
    from levit_bench.runners.sweep import Cell, check_target

    use_platforms(platforms_file, workdir)
    check_target(target, rounds, max_rounds)
    loadgen = scenario_settings(scenario, platform=platform, target_qps=target_qps, latency_bound_ms=latency_bound_ms,
                                samples_per_query=samples_per_query, min_duration=min_duration,
                                min_queries=min_queries, max_wait_ms=max_wait_ms)
    if loadgen and target is not None:
        raise LevitBenchError("--target repeats the closed-loop protocol until its interval is narrow; a scenario "
                              "runs --rounds N times")
    onnx_model, batch = use_onnx(onnx, name, resolution, batch, weights)
    if onnx_model and model:
        raise LevitBenchError("--model and --onnx each name what to measure: give one")
    models = _model_names(model, onnx_model)
    settings = dict(batch=batch, precision=precision, protocol=protocol, weights=weights,
                    wait_timeout=wait_timeout, cores=cores, streams=streams, run_id=run_id, rpc=rpc,
                    rpc_key=rpc_key, mcpu=mcpu,
                    workdir=workdir, store=store, progress=progress)
    if rounds > 1 or target is not None:  # every round in a process of its own, as a sweep's
        return _rounds([Cell(m, runtime, mode) for m in models], platform, rounds=rounds, target=target,
                       max_rounds=max_rounds, cell_timeout=cell_timeout, force=True, scenario=loadgen, **settings)
    return _run_here(models, runtime, mode, platform, scenario=loadgen, **settings)


def scenario_settings(scenario: str | None, platform: str | None = None, **given) -> dict | None:
    """A LoadGen scenario's settings, checked (ScenarioSettings), as a request carries them; None
    without a scenario, where a scenario's option is refused. Without `scenario`, a user's
    `platform` that names one gives it, and its options where `given` has none."""
    from levit_bench.platforms import get_platform
    from levit_bench.runners.base import as_flags

    given = {k: v for k, v in given.items() if v is not None}
    named = platform and get_platform(platform).scenario
    if scenario is None and named:
        options = json.loads(named)
        scenario = options.pop("scenario")
        given = {**options, **given}
    if scenario is None:
        if given:
            raise LevitBenchError(f"{as_flags(sorted(given))} go with --scenario")
        return None
    from levit_bench.scenarios.settings import ScenarioSettings

    names = {"min_duration": "min_duration_s"}
    settings = ScenarioSettings(scenario, **{names.get(k, k): v for k, v in given.items()}).as_dict()
    foreign = sorted(k for k in given if names.get(k, k) not in settings)
    if foreign:
        raise LevitBenchError(f"{as_flags(foreign)}: not a setting of the {scenario} scenario")
    return settings


DRIVE = "levit_bench.scenarios.cell:drive"  # what measures a request with a scenario, in a worker process too


def _check_loadgen() -> None:
    from levit_bench.scenarios.loadgen import import_loadgen

    import_loadgen()  # missing: refused now, before anything is measured


def _run_here(models: list[str], runtime: str, mode: str | None, platform: str, *, batch, precision, protocol,
              weights, wait_timeout, cores, streams, run_id, rpc, rpc_key, mcpu, workdir, store, progress,
              scenario: dict | None = None) -> Measured:
    """One round of each model in this process, each record stored as soon as it is measured."""
    from levit_bench.reports.store import ResultsStore, save_record
    from levit_bench.runners.session import RunRequest, checked_runner, new_run_id, run_cell

    work, store_path = _paths(workdir, store)
    options = _device_options(rpc, rpc_key, mcpu)
    measured = Measured(run_id=run_id or new_run_id())
    requests = [RunRequest(m, runtime, platform, batch=batch, precision=precision, mode=mode, protocol=protocol,
                           weights=weights, run_id=measured.run_id, runtime_options=options,
                           wait_timeout_s=wait_timeout, cores=cores, streams=streams, scenario=scenario)
                for m in models]
    for request in requests:  # every request valid before the first is measured
        checked_runner(request, work).close()
    ResultsStore(store_path, create=False).check()  # a store that cannot take the record: refused now
    drive = None
    if scenario:
        from levit_bench.scenarios.cell import drive

        _check_loadgen()
    with _progress("starting", progress) as view:
        for request in requests:
            label = f"{request.model} on {runtime}"
            record = run_cell(request, work, on_step=lambda step, label=label: view.step(f"{label}: {step}"),
                              on_wait=lambda message, model=request.model: view.log(f"{model}: {message}"),
                              drive=drive)
            save_record(store_path, record)
            measured.append(record)
    return measured


def sweep(platform: str, models: Sequence[str] | None = None, runtimes: Sequence[str] | None = None, *,
          onnx: PathLike | None = None, name: str | None = None, resolution: int | None = None,
          batch: int | None = None, precision: str | None = None, protocol: str = "default",
          weights: str | None = None, rounds: int = 3, target: float | None = None, max_rounds: int = MAX_ROUNDS,
          force: bool = False, cell_timeout: float = DEFAULT_CELL_TIMEOUT_S, profile: bool = False,
          run_id: str | None = None, wait_timeout: float = DEFAULT_WAIT_TIMEOUT_S, cores: int | str | None = None,
          streams: int | None = None, rpc: str | None = None, rpc_key: str | None = None, mcpu: str | None = None,
          platforms_file: PathLike | None = None, workdir: PathLike | None = None,
          store: PathLike | None = None, progress: bool = False, scenario: str | None = None,
          target_qps: float | None = None, latency_bound_ms: float | None = None,
          samples_per_query: int | None = None, min_duration: float | None = None, min_queries: int | None = None,
          max_wait_ms: float | None = None, capacity: bool = False) -> Measured:
    """Measure every model x runtime cell on one platform, `rounds` times, every cell-round in a
    process of its own, the cells in a new random order each round, and store every record
    (`levit-bench sweep`). Cell-rounds already stored are skipped unless `force`; a cell that
    crashes or times out (`cell_timeout` seconds) is stored as failed and the sweep goes on.
    `runtimes` entries may name a mode (`torch:eager`, `tvm:tuned`); default: every runtime.
    `scenario` (and its settings, as `run`'s) measures every cell under LoadGen; `capacity`
    searches every cell's server capacity under `latency_bound_ms` once per round instead
    (`Measured.capacities`; its runs are the records)."""
    from levit_bench.runtimes import RUNTIMES
    from levit_bench.runners.sweep import plan

    use_platforms(platforms_file, workdir)
    options = dict(latency_bound_ms=latency_bound_ms, min_duration=min_duration, min_queries=min_queries,
                   max_wait_ms=max_wait_ms)
    if capacity:
        if scenario is not None or target_qps is not None or samples_per_query is not None:
            raise LevitBenchError("--capacity runs the offline and server scenarios itself: --scenario, "
                                  "--target-qps and --samples-per-query do not go with it")
        if target is not None or profile:
            raise LevitBenchError("--capacity searches each cell once per round: --target and --profile do not "
                                  "go with it")
        loadgen = capacity_settings(**options)
    else:
        loadgen = scenario_settings(scenario, platform=platform, target_qps=target_qps,
                                    samples_per_query=samples_per_query, **options)
        if loadgen and (target is not None or profile):
            raise LevitBenchError("--target and --profile repeat the closed-loop protocol; a scenario runs "
                                  "--rounds N times")
    onnx_model, batch = use_onnx(onnx, name, resolution, batch, weights)
    planned = plan(_model_names(models, onnx_model), _listed(runtimes) or list(RUNTIMES), resolve_workdir(workdir))
    return _rounds(planned, platform, batch=batch, precision=precision, protocol=protocol, weights=weights,
                   rounds=rounds, target=target, max_rounds=max_rounds, force=force, cell_timeout=cell_timeout,
                   profile=profile, run_id=run_id, wait_timeout=wait_timeout, cores=cores, streams=streams,
                   rpc=rpc, rpc_key=rpc_key, mcpu=mcpu, workdir=workdir, store=store, progress=progress,
                   **({"capacity": loadgen} if capacity else {"scenario": loadgen}))


def _rounds(planned: list[Cell], platform: str, *, batch, precision, protocol, weights, rounds, target, max_rounds,
            force, run_id, wait_timeout, cores, streams, rpc, rpc_key, mcpu, workdir, store, progress,
            cell_timeout: float = DEFAULT_CELL_TIMEOUT_S, profile: bool = False, scenario: dict | None = None,
            capacity: dict | None = None) -> Measured:
    """The `planned` cells measured for `rounds` rounds (and more while `target` wants them), every
    cell-round in a worker process, every record stored."""
    from levit_bench.platforms import get_platform
    from levit_bench.reports.store import ResultsStore
    from levit_bench.runners.session import new_run_id
    from levit_bench.runners.sweep import check_cell_timeout, check_target, run_sweep, sweep_requests

    check_target(target, rounds, max_rounds)
    check_cell_timeout(cell_timeout)
    work, store_path = _paths(workdir, store)
    options = _device_options(rpc, rpc_key, mcpu)
    measured = Measured(run_id=run_id or new_run_id())
    requests = sweep_requests(planned, platform, work, measured.run_id, batch=batch, precision=precision,
                              protocol=protocol, weights=weights, runtime_options=options,
                              wait_timeout_s=wait_timeout, cores=cores, streams=streams,
                              scenario=scenario or capacity and {**capacity, "scenario": "offline"})
    ResultsStore(store_path, create=False).check()
    if scenario or capacity:
        _check_loadgen()
    if protocol != "smoke" and get_platform(platform).device == "cpu" and "rpc" not in options:
        calibrate(progress=progress)  # once per host, before the first cell: every record's peak_fraction reads it
    results_store = ResultsStore(store_path)
    if capacity:
        _capacities(requests, capacity, rounds, results_store, work, cell_timeout, measured, progress)
        return measured
    more = more_rounds(target, max_rounds, results_store)
    with _progress("sweep", progress, total=len(planned) * rounds) as view:
        def on_cell(cell, state):
            if state == "running":
                view.step(cell.label)
            else:
                view.advance()

        def on_round(number, count, wanting):
            if number > rounds:
                view.extend(count)
                view.update(info=f"round {number}: every cell again, {wanting} wider than ±{target:.1%}")

        outcomes = run_sweep(requests, work, done_rounds=results_store.count_ok, on_record=results_store.insert_or_keep,
                             force=force, on_cell=on_cell, rounds=rounds, more=more, on_round=on_round,
                             cell_timeout_s=cell_timeout, drive=scenario and DRIVE)
    measured.extend(o.record for o in outcomes if o.record)
    measured.skipped = [o.cell.label for o in outcomes if o.status == "skipped"]
    measured.refused = [(o.cell.label, o.error) for o in outcomes if o.status == "refused"]
    if more is not None:
        measured.still_wide = _still_wide(outcomes, more)
    if profile:
        _profile_cells(requests, outcomes, results_store, work, cell_timeout, measured, progress)
    return measured


def _capacities(requests: list[RunRequest], settings: dict, rounds: int, store: ResultsStore, work: Path,
                cell_timeout: float, measured: Measured, progress: bool) -> None:
    """`sweep(capacity=...)`: each cell's capacity searched once per round, the cells shuffled afresh
    each round, every run in a worker process of its own; every run and search stored."""
    import random

    from levit_bench.records import cell_id
    from levit_bench.runners.session import new_record
    from levit_bench.runners.sweep import Cell, run_isolated, shuffled
    from levit_bench.scenarios.capacity import find_capacity

    class Refused(Exception):
        pass

    rng = random.Random()
    with _progress("capacity", progress, total=len(requests) * rounds) as view:
        for number in range(1, rounds + 1):
            for index in shuffled(range(len(requests)), rng, group=lambda i: requests[i].model):
                request = requests[index]
                label = Cell(request.model, request.runtime, request.mode).label

                def measure(scenario: dict) -> dict:
                    view.step(f"{label}: {scenario['scenario']}" + (f" at {scenario['target_qps']:g} QPS"
                                                                    if scenario.get("target_qps") else ""))
                    cell = dataclasses.replace(request, scenario=scenario)
                    outcome = run_isolated(cell, work, cell_timeout, drive=DRIVE)
                    if outcome.refused:
                        raise Refused(outcome.error)
                    record = outcome.record
                    if record is None:
                        record = {**new_record(cell), "error": outcome.error}
                        record["cell"] = cell_id(record)
                    record["round"] = number
                    store.insert_or_keep(record)
                    measured.append(record)
                    return record

                try:
                    found = {**find_capacity(measure, settings), "round": number}
                except Refused as e:
                    measured.refused.append((label, str(e)))
                else:
                    store.insert_or_keep(found, table="capacities")
                    measured.capacities.append(found)
                view.advance()


def _still_wide(outcomes: list, more: MoreRounds) -> list[str]:
    """The cells whose last record the rule for more rounds still wants."""
    from levit_bench.records import CELL_KEY

    last = {o.cell.label: o.record for o in outcomes if o.record and o.record["status"] == "ok"}
    return [label for label, record in last.items() if more.wanted({k: record.get(k) for k in CELL_KEY})]


def _profile_cells(requests: list[RunRequest], outcomes: list, store: ResultsStore, work: Path, cell_timeout: float,
                   measured: Measured, progress: bool) -> None:
    """`sweep(profile=True)`: every cell measured ok (now or before) profiled once, each in a process
    of its own, the profiles stored; a cell its runtime cannot profile is named, not fatal."""
    from levit_bench.runners.sweep import Cell, run_isolated

    batches = {o.cell: o.record["batch"] for o in outcomes if o.status == "ok"}
    done = {o.cell for o in outcomes if o.status in ("ok", "skipped")}
    todo = [dataclasses.replace(r, batch=batches.get(cell, r.batch)) for r in requests
            if (cell := Cell(r.model, r.runtime, r.mode)) in done]
    with _progress("profile", progress, total=len(todo)) as view:
        for request in todo:
            label = Cell(request.model, request.runtime, request.mode).label
            view.step(f"profile {label}")
            outcome = run_isolated(request, work, cell_timeout, task="profile")
            if outcome.record is None:
                measured.profile_failures.append(f"{label}: {outcome.error}")
            else:
                store.insert_or_keep(outcome.record, table="profiles")
                measured.profiles.append(outcome.record)
            view.advance()


def capacity_settings(latency_bound_ms: float | None = None, min_duration: float | None = None,
                      min_queries: int | None = None, max_wait_ms: float | None = None) -> dict:
    """The server settings a capacity search probes with, checked; its rate is the search's."""
    settings = scenario_settings("server", target_qps=1.0, latency_bound_ms=latency_bound_ms,
                                 min_duration=min_duration, min_queries=min_queries, max_wait_ms=max_wait_ms)
    return {k: v for k, v in settings.items() if k != "target_qps"}


def capacity(model: str | None, runtime: str, platform: str, *, latency_bound_ms: float | None = None,
             onnx: PathLike | None = None, name: str | None = None, resolution: int | None = None,
             batch: int | None = None, precision: str | None = None, mode: str | None = None,
             weights: str | None = None, cores: int | str | None = None, streams: int | None = None,
             min_duration: float | None = None, min_queries: int | None = None, max_wait_ms: float | None = None,
             tolerance: float | None = None, wait_timeout: float = DEFAULT_WAIT_TIMEOUT_S, run_id: str | None = None,
             platforms_file: PathLike | None = None, workdir: PathLike | None = None,
             store: PathLike | None = None, progress: bool = False) -> dict:
    """The highest server rate (queries/s) whose LoadGen run is VALID under `latency_bound_ms`
    (p99), found from the offline throughput by bisection to `tolerance` (default ±2%)
    (`levit-bench capacity`). Every run (the offline one, each probe) is stored as a
    measurement; the search's record, which names them, is stored and returned."""
    from levit_bench.reports.store import ResultsStore, save_record
    from levit_bench.runners.session import RunRequest, checked_runner, new_run_id, run_cell
    from levit_bench.scenarios.capacity import TOLERANCE, find_capacity

    use_platforms(platforms_file, workdir)
    settings = capacity_settings(latency_bound_ms, min_duration, min_queries, max_wait_ms)
    tolerance = TOLERANCE if tolerance is None else tolerance
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 < tolerance < 0.5:
        raise LevitBenchError(f"--tolerance must be between 0 and 0.5 (0.02 is ±2%), not {tolerance}")
    onnx_model, batch = use_onnx(onnx, name, resolution, batch, weights)
    if bool(onnx_model) == bool(model):
        raise LevitBenchError("name the model to serve: --model NAME or --onnx FILE")
    work, store_path = _paths(workdir, store)
    request = RunRequest(onnx_model or model, runtime, platform, batch=batch, precision=precision, mode=mode,
                         weights=weights, run_id=run_id or new_run_id(), wait_timeout_s=wait_timeout, cores=cores,
                         streams=streams, scenario={**settings, "target_qps": 1.0})
    checked_runner(request, work).close()
    ResultsStore(store_path, create=False).check()
    _check_loadgen()
    from levit_bench.scenarios.cell import drive

    with _progress("capacity", progress) as view:
        def measure(scenario: dict) -> dict:
            step = f"{request.model} on {runtime}, {scenario['scenario']}" + (
                f" at {scenario['target_qps']:g} QPS" if scenario.get("target_qps") else "")
            record = run_cell(dataclasses.replace(request, scenario=scenario), work,
                              on_step=lambda what: view.step(f"{step}: {what}"), on_wait=view.log, drive=drive)
            save_record(store_path, record)
            return record

        def heard(probe) -> None:
            view.log(f"{probe.target_qps:g} QPS: {'VALID' if probe.valid else 'INVALID'} (p99 {probe.p99_ms:.1f} ms)"
                     if probe.p99_ms is not None else f"{probe.target_qps:g} QPS: "
                     f"{'VALID' if probe.valid else 'INVALID'}")

        record = find_capacity(measure, settings, tolerance, on_probe=heard)
    save_record(store_path, record, table="capacities")
    return record


def profile(model: str | None, runtime: str, platform: str, *,
            onnx: PathLike | None = None, name: str | None = None, resolution: int | None = None,
            batch: int | None = None, precision: str | None = None, mode: str | None = None,
            protocol: str = "default", weights: str | None = None, wait_timeout: float = DEFAULT_WAIT_TIMEOUT_S,
            cores: int | str | None = None, streams: int | None = None, platforms_file: PathLike | None = None,
            workdir: PathLike | None = None, store: PathLike | None = None, progress: bool = False) -> dict:
    """Where one cell's time goes, per model component, by the runtime's own profiler; the profile
    is stored and returned (`levit-bench profile`)."""
    from levit_bench.reports.store import ResultsStore, save_record
    from levit_bench.runners.profile_run import profile_cell
    from levit_bench.runners.session import RunRequest, checked_runner

    use_platforms(platforms_file, workdir)
    onnx_model, batch = use_onnx(onnx, name, resolution, batch, weights)
    if bool(onnx_model) == bool(model):
        raise LevitBenchError("name the model to profile: --model NAME or --onnx FILE")
    work, store_path = _paths(workdir, store)
    request = RunRequest(onnx_model or model, runtime, platform, batch=batch, precision=precision, mode=mode,
                         protocol=protocol, weights=weights, wait_timeout_s=wait_timeout, cores=cores, streams=streams)
    checked_runner(request, work).close()
    ResultsStore(store_path, create=False).check()
    with _progress("profile", progress) as view:
        result = profile_cell(request, work, on_step=lambda step: view.step(f"{request.model} on {runtime}: {step}"))
    save_record(store_path, result, table="profiles")
    return result


def records(*, workdir: PathLike | None = None, store: PathLike | None = None, **filters) -> list[dict]:
    """The stored measurements, oldest first, as dicts, where every filter (model, runtime,
    platform, status, host, run_id, precision) equals its value."""
    from levit_bench.registry import normalise_name

    if filters.get("model"):
        filters["model"] = normalise_name(filters["model"])
    return _reading(workdir, store).records(**filters)


def capacities(*, workdir: PathLike | None = None, store: PathLike | None = None, **filters) -> list[dict]:
    """The stored capacity searches, oldest first, where every filter (model, runtime, platform,
    status, host, run_id) equals its value; each names its probes' runs by uid."""
    from levit_bench.registry import normalise_name

    if filters.get("model"):
        filters["model"] = normalise_name(filters["model"])
    wanted = {k: v for k, v in filters.items() if v is not None}
    return [r for r in _reading(workdir, store).capacity_records() if all(r.get(k) == v for k, v in wanted.items())]


def results(*, workdir: PathLike | None = None, store: PathLike | None = None, **filters) -> pd.DataFrame:
    """`records(...)` as a pandas DataFrame: one row per stored measurement, a column per field."""
    import pandas as pd

    return pd.DataFrame(records(workdir=workdir, store=store, **filters))


def cells(*, workdir: PathLike | None = None, store: PathLike | None = None, **filters) -> list[dict]:
    """One dict per cell (`results --aggregate`): the median images/s over its rounds, its 95%
    interval `images_per_s_ci` ([low, high]), `rounds`, and the stability `flags`."""
    from levit_bench.reports.confidence import group_cells

    return [cell.summary() for cell in group_cells(records(workdir=workdir, store=store, **filters))]


def aggregate(*, workdir: PathLike | None = None, store: PathLike | None = None, **filters) -> pd.DataFrame:
    """`cells(...)` as a DataFrame, the interval also as columns `images_per_s_low`, `images_per_s_high`."""
    return _with_interval(cells(workdir=workdir, store=store, **filters), "images_per_s")


def comparison(by: str, a: str, b: str, *, models: Sequence[str] | None = None,
               platforms: Sequence[str] | None = None, min_effect: float | None = None,
               workdir: PathLike | None = None, store: PathLike | None = None) -> list[dict]:
    """One dict per cell measured on both sides A and B along `by` (runtime, run, host, precision,
    version): `ratio` of images/s B / A, `ratio_ci`, `verdict` (faster, slower, same)."""
    from levit_bench.registry import normalise_name
    from levit_bench.reports.compare import DEFAULT_MIN_EFFECT, compare as compare_records

    models = [normalise_name(m) for m in _listed(models) or ()] or None
    return compare_records(_reading(workdir, store).records(), by, a, b, models=models, platforms=_listed(platforms),
                           min_effect=DEFAULT_MIN_EFFECT if min_effect is None else min_effect)


def compare(by: str, a: str, b: str, *, models: Sequence[str] | None = None, platforms: Sequence[str] | None = None,
            min_effect: float | None = None, workdir: PathLike | None = None,
            store: PathLike | None = None) -> pd.DataFrame:
    """`comparison(...)` as a DataFrame, the interval also as columns `ratio_low`, `ratio_high`."""
    return _with_interval(comparison(by, a, b, models=models, platforms=platforms, min_effect=min_effect,
                                     workdir=workdir, store=store), "ratio")


def _with_interval(rows: list[dict], name: str) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(rows)
    if rows:
        frame[f"{name}_low"] = [row[f"{name}_ci"][0] for row in rows]
        frame[f"{name}_high"] = [row[f"{name}_ci"][1] for row in rows]
    return frame


def report(out: PathLike | None = None, *, platforms: Sequence[str] | None = None,
           runtimes: Sequence[str] | None = None, onnx: PathLike | None = None, name: str | None = None,
           resolution: int | None = None, workdir: PathLike | None = None, store: PathLike | None = None,
           progress: bool = False) -> Path:
    """Write the report (`index.html`, the Figure-1 PNGs, `results.csv`) into `out` (default
    <workdir>/reports) and return the path of its index.html (`levit-bench report`)."""
    return report_result(out, platforms=platforms, runtimes=runtimes, onnx=onnx, name=name, resolution=resolution,
                         workdir=workdir, store=store, progress=progress).index


def report_result(out: PathLike | None = None, *, platforms=None, runtimes=None, onnx=None, name=None,
                  resolution=None, workdir=None, store=None, progress: bool = False):
    """`report`, with what it wrote (`reports.report.ReportResult`: index, figures, csv, points)."""
    from levit_bench.reports.report import build_report

    use_onnx(onnx, name, resolution)  # its name, family and counts from the file, for the points stored of it
    out = Path(out) if out is not None else resolve_workdir(workdir) / "reports"
    with _progress("report", progress) as view:
        return build_report(_reading(workdir, store), out, _listed(platforms), _listed(runtimes),
                            on_step=lambda step: view.step(f"report: {step}"))


def merge(other: PathLike, *, workdir: PathLike | None = None, store: PathLike | None = None) -> tuple[int, int]:
    """Import every row of another results store that this one lacks, all or nothing:
    (rows imported, rows already here)."""
    from levit_bench.reports.store import ResultsStore, read_rows

    rows = read_rows(Path(other))  # all checked before this store is opened (or created)
    return ResultsStore(_paths(workdir, store)[1]).insert_rows(rows)
