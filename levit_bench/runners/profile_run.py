"""`levit-bench profile`: one cell measured as `run` does, then profiled by its runtime's own
profiler, and its time told per model component, with each component's compute rate.

The unprofiled median comes first, in the same process on the same held core, so that the
profiler's overhead is stated, not guessed: `overhead` is the profiled total per call over
the unprofiled median, less one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from levit_bench import environment
from levit_bench.errors import LevitBenchError
from levit_bench.exporters.parity import seeded_images
from levit_bench.exporters.work import work_per_image
from levit_bench.runners import calibrate as calibration
from levit_bench.runners import core_locks
from levit_bench.runners.artifacts import ensure_artifact, ensure_quantized
from levit_bench.runners.measure import get_protocol, summarise
from levit_bench.runners.memory import keep_freed_memory
from levit_bench.runners.profiling import MS_DIGITS, by_component, component_map_of
from levit_bench.runners.session import RunRequest, RunSettings, checked_runner


def _roofline(row: dict, flops: int, moved: int, batch: int) -> None:
    """Add a component's FLOPs and bytes per image, its GFLOP/s and its arithmetic intensity."""
    row.update(flops_per_image=flops, bytes_per_image=moved,
               intensity=round(flops / moved, 3) if moved else None,
               gflops=round(flops * batch / (row["ms"] / 1e3) / 1e9, 2) if flops and row["ms"] else None)


def profile_cell(request: RunRequest, workdir: Path, on_step: Callable[[str], None] = lambda step: None) -> dict:
    """The cell's profile: unprofiled median, the profiler's total, and time per component."""
    host = environment.host_info()
    settings = RunSettings.of(request)
    if settings.batch is None:
        raise LevitBenchError(f"profile needs --batch on {request.platform} (a batch search is not profiled)")
    if settings.streams > 1:
        raise LevitBenchError(f"profile times one stream's kernels, not {settings.streams} (--streams 1)")
    runner = checked_runner(request, workdir, host)
    platform, protocol = settings.platform, get_protocol(request.protocol)
    try:
        artifact = ensure_artifact(workdir, request.model, settings.batch, request.weights, on_step)
        component_map = component_map_of(artifact.sidecar)  # an int8 twin keeps the fp32 graph's node names
        if settings.precision == "int8" and runner.quantizes_onnx:  # else the runner quantizes as it loads
            artifact = ensure_quantized(artifact, request.runtime, on_step)
        with core_locks.pinned(platform, request.wait_timeout_s, on_step):
            on_step("load")
            malloc = keep_freed_memory()
            runner.load(artifact, settings.batch)
            inputs = runner.to_input(seeded_images(settings.batch, artifact.resolution).numpy())
            on_step("measure")
            median_ms = summarise(runner.measure(inputs, protocol).samples_s, settings.batch)["median_ms"]
            on_step("profile")
            profile = runner.profile(inputs, protocol)
        description = runner.describe()
    finally:
        runner.close()
    flops, moved = work_per_image(request.model, settings.batch)
    components = by_component(profile, component_map)
    for row in components:
        _roofline(row, flops.get(row["name"], 0), moved.get(row["name"], 0), settings.batch)
    peak = calibration.cached(host) if platform.device == "cpu" else None
    kernels_ms = sum(k.ms for k in profile.kernels)
    return {
        "uid": uuid.uuid4().hex, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": request.model, "runtime": request.runtime, "mode": description.mode, "platform": platform.name,
        "precision": description.precision, "batch": settings.batch, "threads": description.threads,
        "cores": settings.cores, "streams": settings.streams,
        "host": host.fingerprint, "cpu_model": host.cpu_model, "artifact_sha256": artifact.sha256,
        "protocol": protocol.name, "calls": profile.calls,
        "median_ms": round(median_ms, MS_DIGITS),  # unprofiled
        "total_ms": round(profile.total_ms, MS_DIGITS),  # the profiler's own total per call
        "kernels_ms": round(kernels_ms, MS_DIGITS),  # the sum of the kernels' times per call
        # the runtime's own work between its kernels while profiling, its profiler's included
        "outside_kernels_ms": round(profile.total_ms - kernels_ms, MS_DIGITS),
        "overhead": round(profile.total_ms / median_ms - 1, 4),
        "components": components,
        # the ceilings a roofline draws: this host's calibrated FMA peak and copy bandwidth, for its cores
        "peak_fma_gflops": calibration.fma_gflops(host, description.threads or 1) if peak else None,
        "memory_gbps": peak.get("memory_gbps") if peak else None,
        "kernels": [{"name": k.name, "op": k.op, "ms": round(k.ms, MS_DIGITS)}
                    for k in sorted(profile.kernels, key=lambda k: -k.ms)],
        "profiler": profile.details, "malloc": malloc, "versions": environment.package_versions(),
    }
