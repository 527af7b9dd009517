"""What runs on the hosts of the fleet, as Ray tasks: what a host is, the resume keys of a
sweep's cells there, calibrating it, and one cell-round measured in a worker process of its own,
as a local sweep measures it (`runners/sweep.run_isolated`). Nothing here stores anything: every
record goes back to the driver, which stores it."""

from __future__ import annotations

import ray

from levit_bench import environment
from levit_bench.runners.session import RunRequest
from levit_bench.workdir import resolve_workdir


@ray.remote(num_cpus=0, max_retries=0)
def describe_host() -> dict:
    """This host: its fingerprint, CPU and cores, and the work directory its cells use."""
    host = environment.host_info()
    return {"host": host.fingerprint, "cpu_model": host.cpu_model, "host_info": host.as_dict(),
            "workdir": str(resolve_workdir(None).absolute())}


@ray.remote(num_cpus=0, max_retries=0)
def resume_keys(requests: list[dict], known: dict) -> list[dict | None]:
    """The stored columns a finished twin of each request's cell would have on this host (its
    artifact, runtime versions and fingerprint); None where its artifact is not built yet.
    `known`: the driver's `runners.worker.registrations` (its users' models and platforms)."""
    from levit_bench.runners.sweep import Cell, resume_key
    from levit_bench.runners.worker import register

    register(known)
    host, work = environment.host_info(), resolve_workdir(None)
    return [resume_key(Cell(r["model"], r["runtime"], r["mode"]), RunRequest(**r), work, host) for r in requests]


@ray.remote(num_cpus=0, max_retries=0)
def calibrate_host() -> None:
    """This host's FMA peak and GEMM rates, measured once and cached (what records' rooflines read)."""
    from levit_bench.runners.calibrate import calibrate

    calibrate()


@ray.remote(num_cpus=0, max_retries=0)
def measure_cell(request: dict, known: dict, timeout_s: float, drive: str | None) -> dict:
    """One cell-round on this host, in a worker process of its own: {"record": ...}, or
    {"refused": reason} when the request was refused before anything was measured. A user's
    ONNX model (in `known`) must be at the same path on this host."""
    from levit_bench.runners.sweep import Cell, failed_record, resume_key, run_isolated
    from levit_bench.runners.worker import register

    register(known)
    run, work = RunRequest(**request), resolve_workdir(None)
    outcome = run_isolated(run, work, timeout_s, drive=drive)
    if outcome.refused:
        return {"refused": outcome.error}
    if outcome.record is not None:
        return {"record": outcome.record}
    host = environment.host_info()
    key = resume_key(Cell(run.model, run.runtime, run.mode), run, work, host)
    return {"record": failed_record(run, host, outcome.error, key)}
