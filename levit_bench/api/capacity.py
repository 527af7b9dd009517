"""Capacity: the highest server rate a cell holds under its latency bound (`capacity`), and each
cell's searched once per round in a sweep (`sweep_capacities`, every run in a worker process)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from levit_bench.api.common import (
    DRIVE, Measured, PathLike, check_loadgen, paths, progress_view, scenario_settings, use_onnx, use_platforms)
from levit_bench.errors import LevitBenchError
from levit_bench.runners.core_locks import DEFAULT_WAIT_TIMEOUT_S

if TYPE_CHECKING:
    from levit_bench.store import ResultsStore
    from levit_bench.runners.session import RunRequest


def sweep_capacities(requests: list[RunRequest], settings: dict, rounds: int, store: ResultsStore, work: Path,
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
    with progress_view("capacity", progress, total=len(requests) * rounds) as view:
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
    from levit_bench.store import ResultsStore, save_record
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
    work, store_at = paths(workdir, store)
    request = RunRequest(onnx_model or model, runtime, platform, batch=batch, precision=precision, mode=mode,
                         weights=weights, run_id=run_id or new_run_id(), wait_timeout_s=wait_timeout, cores=cores,
                         streams=streams, scenario={**settings, "target_qps": 1.0})
    checked_runner(request, work).close()
    ResultsStore(store_at, create=False).check()
    check_loadgen()
    from levit_bench.scenarios.cell import drive

    with progress_view("capacity", progress) as view:
        def measure(scenario: dict) -> dict:
            step = f"{request.model} on {runtime}, {scenario['scenario']}" + (
                f" at {scenario['target_qps']:g} QPS" if scenario.get("target_qps") else "")
            record = run_cell(dataclasses.replace(request, scenario=scenario), work,
                              on_step=lambda what: view.step(f"{step}: {what}"), on_wait=view.log, drive=drive)
            save_record(store_at, record)
            return record

        def heard(probe) -> None:
            view.log(f"{probe.target_qps:g} QPS: {'VALID' if probe.valid else 'INVALID'} (p99 {probe.p99_ms:.1f} ms)"
                     if probe.p99_ms is not None else f"{probe.target_qps:g} QPS: "
                     f"{'VALID' if probe.valid else 'INVALID'}")

        record = find_capacity(measure, settings, tolerance, on_probe=heard)
    save_record(store_at, record, table="capacities")
    return record
