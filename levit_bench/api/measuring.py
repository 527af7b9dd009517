"""Measuring: `run` (one round here, or rounds in worker processes), `sweep` (every cell, every
round, each in a process of its own) and `profile`; every record stored as it is made."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from levit_bench.api.capacity import capacity_settings, sweep_capacities
from levit_bench.api.common import (
    DRIVE, Measured, PathLike, calibrate, check_loadgen, device_options, listed, model_names_given, paths,
    progress_view, scenario_settings, use_onnx, use_platforms)
from levit_bench.errors import LevitBenchError
from levit_bench.runners.core_locks import DEFAULT_WAIT_TIMEOUT_S
from levit_bench.runners.sweep import DEFAULT_CELL_TIMEOUT_S, MAX_ROUNDS
from levit_bench.workdir import resolve_workdir

if TYPE_CHECKING:
    from pathlib import Path

    from levit_bench.store import ResultsStore
    from levit_bench.runners.session import RunRequest
    from levit_bench.runners.sweep import Cell, MoreRounds


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
        compile_mode: str | None = None,
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
    from levit_bench.runtimes import with_compile_mode
    from levit_bench.runners.sweep import Cell, check_target

    use_platforms(platforms_file, workdir)
    mode = with_compile_mode(runtime, mode, compile_mode)
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
    models = model_names_given(model, onnx_model)
    settings = dict(batch=batch, precision=precision, protocol=protocol, weights=weights,
                    wait_timeout=wait_timeout, cores=cores, streams=streams, run_id=run_id, rpc=rpc,
                    rpc_key=rpc_key, mcpu=mcpu,
                    workdir=workdir, store=store, progress=progress)
    if rounds > 1 or target is not None:  # every round in a process of its own, as a sweep's
        return _rounds([Cell(m, runtime, mode) for m in models], platform, rounds=rounds, target=target,
                       max_rounds=max_rounds, cell_timeout=cell_timeout, force=True, scenario=loadgen, **settings)
    return _run_here(models, runtime, mode, platform, scenario=loadgen, **settings)


def _run_here(models: list[str], runtime: str, mode: str | None, platform: str, *, batch, precision, protocol,
              weights, wait_timeout, cores, streams, run_id, rpc, rpc_key, mcpu, workdir, store, progress,
              scenario: dict | None = None) -> Measured:
    """One round of each model in this process, each record stored as soon as it is measured."""
    from levit_bench.store import ResultsStore, save_record
    from levit_bench.runners.session import RunRequest, checked_runner, new_run_id, run_cell

    work, store_at = paths(workdir, store)
    options = device_options(rpc, rpc_key, mcpu)
    measured = Measured(run_id=run_id or new_run_id())
    requests = [RunRequest(m, runtime, platform, batch=batch, precision=precision, mode=mode, protocol=protocol,
                           weights=weights, run_id=measured.run_id, runtime_options=options,
                           wait_timeout_s=wait_timeout, cores=cores, streams=streams, scenario=scenario)
                for m in models]
    for request in requests:  # every request valid before the first is measured
        checked_runner(request, work).close()
    ResultsStore(store_at, create=False).check()  # a store that cannot take the record: refused now
    drive = None
    if scenario:
        from levit_bench.scenarios.cell import drive

        check_loadgen()
    with progress_view("starting", progress) as view:
        for request in requests:
            label = f"{request.model} on {runtime}"
            record = run_cell(request, work, on_step=lambda step, label=label: view.step(f"{label}: {step}"),
                              on_wait=lambda message, model=request.model: view.log(f"{model}: {message}"),
                              drive=drive)
            save_record(store_at, record)
            measured.append(record)
    return measured


def sweep(platform: str, models: Sequence[str] | None = None, runtimes: Sequence[str] | None = None, *,
          onnx: PathLike | None = None, name: str | None = None, resolution: int | None = None,
          batch: int | None = None, precision: str | None = None, protocol: str = "default",
          weights: str | None = None, compile_mode: str | None = None, rounds: int = 3,
          target: float | None = None, max_rounds: int = MAX_ROUNDS, force: bool = False, cell_timeout: float = DEFAULT_CELL_TIMEOUT_S, profile: bool = False,
          run_id: str | None = None, wait_timeout: float = DEFAULT_WAIT_TIMEOUT_S, cores: int | str | None = None,
          streams: int | None = None, rpc: str | None = None, rpc_key: str | None = None, mcpu: str | None = None,
          platforms_file: PathLike | None = None, workdir: PathLike | None = None,
          store: PathLike | None = None, progress: bool = False, scenario: str | None = None,
          target_qps: float | None = None, latency_bound_ms: float | None = None,
          samples_per_query: int | None = None, min_duration: float | None = None, min_queries: int | None = None,
          max_wait_ms: float | None = None, capacity: bool = False, cluster: str | None = None,
          hosts: Sequence[str] | None = None) -> Measured:
    """Measure every model x runtime cell on one platform, `rounds` times, every cell-round in a
    process of its own, the cells in a new random order each round, and store every record
    (`levit-bench sweep`). Cell-rounds already stored are skipped unless `force`; a cell that
    crashes or times out (`cell_timeout` seconds) is stored as failed and the sweep goes on.
    `runtimes` entries may name a mode (`torch:eager`, `tvm:tuned`); default: every runtime, and
    torch:compiled beside torch (`runtimes.default_sweep`); `compile_mode` (max-autotune) makes
    the torch:compiled cells compile in that Inductor mode.
    `scenario` (and its settings, as `run`'s) measures every cell under LoadGen; `capacity`
    searches every cell's server capacity under `latency_bound_ms` once per round instead
    (`Measured.capacities`; its runs are the records).
    `cluster` (HEAD:PORT, or ray://HEAD:PORT) measures every cell on every host of that Ray
    cluster that measures the platform, or on those labelled in `hosts`; records come back here
    and are stored here (`levit_bench/fleet`)."""
    from levit_bench.runtimes import default_sweep
    from levit_bench.runners.sweep import compiled_as, plan

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
    entries = compiled_as(listed(runtimes) or default_sweep(), compile_mode)
    planned = plan(model_names_given(models, onnx_model), entries, resolve_workdir(workdir))
    return _rounds(planned, platform, batch=batch, precision=precision, protocol=protocol, weights=weights,
                   rounds=rounds, target=target, max_rounds=max_rounds, force=force, cell_timeout=cell_timeout,
                   profile=profile, run_id=run_id, wait_timeout=wait_timeout, cores=cores, streams=streams,
                   rpc=rpc, rpc_key=rpc_key, mcpu=mcpu, workdir=workdir, store=store, progress=progress,
                   cluster=cluster, hosts=hosts, **({"capacity": loadgen} if capacity else {"scenario": loadgen}))


def _rounds(planned: list[Cell], platform: str, *, batch, precision, protocol, weights, rounds, target, max_rounds,
            force, run_id, wait_timeout, cores, streams, rpc, rpc_key, mcpu, workdir, store, progress,
            cell_timeout: float = DEFAULT_CELL_TIMEOUT_S, profile: bool = False, scenario: dict | None = None,
            capacity: dict | None = None, cluster: str | None = None, hosts: Sequence[str] | None = None) -> Measured:
    """The `planned` cells measured for `rounds` rounds (and more while `target` wants them), every
    cell-round in a worker process, every record stored."""
    from levit_bench.platforms import get_platform
    from levit_bench.store import ResultsStore
    from levit_bench.runners.session import new_run_id
    from levit_bench.runners.sweep import check_cell_timeout, check_target, run_sweep, sweep_requests

    check_target(target, rounds, max_rounds)
    check_cell_timeout(cell_timeout)
    work, store_at = paths(workdir, store)
    options = device_options(rpc, rpc_key, mcpu)
    if cluster is not None and (capacity or profile):
        raise LevitBenchError("a --cluster sweep measures cells on its hosts, closed loop or under a --scenario: "
                              "--capacity and --profile run on one host (sweep without --cluster)")
    if hosts and cluster is None:
        raise LevitBenchError("--hosts chooses among the hosts of a --cluster")
    measured = Measured(run_id=run_id or new_run_id())
    requests = sweep_requests(planned, platform, work, measured.run_id, batch=batch, precision=precision,
                              protocol=protocol, weights=weights, runtime_options=options,
                              wait_timeout_s=wait_timeout, cores=cores, streams=streams,
                              scenario=scenario or capacity and {**capacity, "scenario": "offline"},
                              here=cluster is None)
    ResultsStore(store_at, create=False).check()
    if scenario or capacity:
        check_loadgen()
    calibrating = protocol != "smoke" and get_platform(platform).device == "cpu"
    if calibrating and cluster is None and "rpc" not in options:
        calibrate(progress=progress)  # once per host, before the first cell: every record's peak_fraction reads it
    results_store = ResultsStore(store_at)
    if capacity:
        sweep_capacities(requests, capacity, rounds, results_store, work, cell_timeout, measured, progress)
        return measured
    more = more_rounds(target, max_rounds, results_store)
    # a fleet's hosts measure the cells they can; a device behind --rpc (TVM's boards, through their
    # tracker) is measured from here, as in a sweep without --cluster
    here = requests if cluster is None else [r for r in requests if r.runtime_options]
    on_hosts = [] if cluster is None else [r for r in requests if not r.runtime_options]
    outcomes = []
    if on_hosts:
        outcomes += _on_the_fleet(cluster, hosts, on_hosts, platform, rounds, more, target, results_store, force,
                                  cell_timeout, calibrating, scenario, progress)
    if here:
        with progress_view("sweep", progress, total=len(here) * rounds) as view:
            def on_cell(cell, state):
                if state == "running":
                    view.step(cell.label)
                else:
                    view.advance()

            outcomes += run_sweep(here, work, done_rounds=results_store.count_ok,
                                  on_record=results_store.insert_or_keep, force=force, on_cell=on_cell, rounds=rounds,
                                  more=more, on_round=_announce_rounds(view, rounds, target),
                                  cell_timeout_s=cell_timeout, drive=scenario and DRIVE)
    measured.extend(o.record for o in outcomes if o.record)
    measured.skipped = [o.label for o in outcomes if o.status == "skipped"]
    measured.refused = [(o.label, o.error) for o in outcomes if o.status == "refused"]
    if more is not None:
        measured.still_wide = _still_wide(outcomes, more)
    if profile:
        _profile_cells(requests, outcomes, results_store, work, cell_timeout, measured, progress)
    return measured


def _announce_rounds(view, rounds: int, target: float | None):
    def on_round(number: int, count: int, wanting: int) -> None:
        if number > rounds:
            view.extend(count)
            view.update(info=f"round {number}: every cell again, {wanting} wider than ±{target:.1%}")

    return on_round


def _on_the_fleet(cluster: str, hosts: Sequence[str] | None, requests: list[RunRequest], platform: str, rounds: int,
                  more: MoreRounds | None, target: float | None, store: ResultsStore, force: bool,
                  cell_timeout: float, calibrating: bool, scenario: dict | None, progress: bool) -> list:
    """The requests measured on the hosts of a Ray cluster (`levit_bench/fleet`), stored here; their
    outcomes."""
    from levit_bench.fleet.nodes import connected, hosts as cluster_hosts
    from levit_bench.fleet.sweep import choose_hosts, describe_targets, run_fleet_sweep
    from levit_bench.platforms import get_platform

    base = get_platform(platform).base  # what hosts advertise: a user's platform is settings of one
    with connected(cluster):
        chosen = choose_hosts(cluster_hosts(), listed(hosts), base)
        targets = describe_targets(chosen, base)
        if calibrating:
            _calibrate_hosts(targets)
        with progress_view("sweep", progress, total=len(requests) * rounds * len(targets)) as view:
            def on_cell(label: str, state: str) -> None:
                if state == "running":
                    view.step(label)
                elif not state.startswith("moved"):
                    view.advance()

            return run_fleet_sweep(requests, targets, done_rounds=store.count_ok, on_record=store.insert_or_keep,
                                   force=force, cell_timeout_s=cell_timeout, on_cell=on_cell, rounds=rounds,
                                   drive=scenario and DRIVE, more=more, on_round=_announce_rounds(view, rounds, target))


def _calibrate_hosts(targets: list) -> None:
    """Every host's peaks, measured there once and cached (its records' rooflines read them)."""
    from levit_bench.fleet import tasks
    from levit_bench.fleet.nodes import FleetError
    from levit_bench.fleet.sweep import HostLeft, answer, on_host

    for target, ref in [(t, on_host(tasks.calibrate_host, t.label).remote()) for t in targets]:
        try:
            answer(ref, target.node_id, target.label)
        except HostLeft as e:
            raise FleetError(f"host {target.label} left the cluster before the sweep began ({e})") from None


def _still_wide(outcomes: list, more: MoreRounds) -> list[str]:
    """The cells whose last record the rule for more rounds still wants."""
    from levit_bench.records import CELL_KEY

    last = {o.label: o.record for o in outcomes if o.record and o.record["status"] == "ok"}
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
    with progress_view("profile", progress, total=len(todo)) as view:
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


def profile(model: str | None, runtime: str, platform: str, *,
            onnx: PathLike | None = None, name: str | None = None, resolution: int | None = None,
            batch: int | None = None, precision: str | None = None, mode: str | None = None,
            compile_mode: str | None = None,
            protocol: str = "default", weights: str | None = None, wait_timeout: float = DEFAULT_WAIT_TIMEOUT_S,
            cores: int | str | None = None, streams: int | None = None, platforms_file: PathLike | None = None,
            workdir: PathLike | None = None, store: PathLike | None = None, progress: bool = False) -> dict:
    """Where one cell's time goes, per model component, by the runtime's own profiler; the profile
    is stored and returned (`levit-bench profile`)."""
    from levit_bench.store import ResultsStore, save_record
    from levit_bench.runners.profile_run import profile_cell
    from levit_bench.runtimes import with_compile_mode
    from levit_bench.runners.session import RunRequest, checked_runner

    use_platforms(platforms_file, workdir)
    mode = with_compile_mode(runtime, mode, compile_mode)
    onnx_model, batch = use_onnx(onnx, name, resolution, batch, weights)
    if bool(onnx_model) == bool(model):
        raise LevitBenchError("name the model to profile: --model NAME or --onnx FILE")
    work, store_at = paths(workdir, store)
    request = RunRequest(onnx_model or model, runtime, platform, batch=batch, precision=precision, mode=mode,
                         protocol=protocol, weights=weights, wait_timeout_s=wait_timeout, cores=cores, streams=streams)
    checked_runner(request, work).close()
    ResultsStore(store_at, create=False).check()
    with progress_view("profile", progress) as view:
        result = profile_cell(request, work, on_step=lambda step: view.step(f"{request.model} on {runtime}: {step}"))
    save_record(store_at, result, table="profiles")
    return result
