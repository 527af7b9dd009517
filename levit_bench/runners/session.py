"""One measurement: model x runtime x platform -> a record, ok or failed (the caller stores it).

Order of work: refuse an invalid request (nothing stored), find or export the artifact, take
a free core exclusively and pin to it, load (timed), first call (timed), warm up and measure
while watching the host's load, compute the unfused PyTorch reference on the seeded inputs on
the same core, and gate: a record is `ok` only when the runtime's outputs agree with the
reference within its precision's tolerance (exporters.parity.TOLERANCES). Return the record.
An int8 run measures the artifact's twin quantized for its runtime (quantized on demand). A
user's ONNX model (`--onnx`) has no PyTorch form: its reference is ONNX Runtime fp32 on the
file itself, without graph optimisations, and the record says so (`reference`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from levit_bench import environment
from levit_bench.errors import CheckpointError, LevitBenchError, one_line
from levit_bench.exporters.onnx_import import REFERENCE
from levit_bench.exporters.parity import onnxruntime_outputs, seeded_images, tolerance_for, torch_logits
from levit_bench.exporters.quantize import QuantizeError
from levit_bench.models.checkpoints import read_checkpoint
from levit_bench.platforms import GPU_MAX_BATCH, Platform, get_platform, positive_int
from levit_bench.records import cell_id
from levit_bench.registry import get_spec
from levit_bench.runners import calibrate as calibration
from levit_bench.runners import core_locks, host_load, thread_use
from levit_bench.runners.artifacts import Artifact, DamagedArtifact, ensure_artifact, ensure_quantized
from levit_bench.runners.base import Runner
from levit_bench.runners.core_locks import DEFAULT_WAIT_TIMEOUT_S, CoresBusy
from levit_bench.runners.measure import get_protocol, summarise
from levit_bench.runners.memory import MemoryWatch, keep_freed_memory
from levit_bench.runtimes import RUNTIMES, get_runtime

PARITY_IMAGES = 64  # at most this many of the batch are compared with the reference


@dataclass(frozen=True)
class RunRequest:
    model: str
    runtime: str
    platform: str
    batch: int | None = None  # None: the platform's batch
    precision: str | None = None  # None: the platform's precision where the runtime has it, else fp32
    mode: str | None = None  # None: the runtime's default mode (runtimes.RuntimeSpec)
    protocol: str = "default"
    weights: str | None = None
    run_id: str | None = None
    runtime_options: dict = field(default_factory=dict)  # what only this runtime takes (tvm: rpc, rpc_key, mcpu)
    wait_timeout_s: float = DEFAULT_WAIT_TIMEOUT_S  # how long to wait for free cores
    cores: int | str | None = None  # None: the platform's; "all": every physical core this process may use
    streams: int | None = None  # None: the platform's (1 for the built-in ones)
    scenario: dict | None = None  # a LoadGen scenario's settings (scenarios.ScenarioSettings.as_dict()); None: the protocol

    def __post_init__(self):
        if self.batch is not None and (isinstance(self.batch, bool) or self.batch < 1):
            raise LevitBenchError(f"the batch must be a positive integer, not {self.batch}")
        if self.wait_timeout_s < 0:
            raise LevitBenchError(f"the wait timeout must be >= 0 s, not {self.wait_timeout_s:g}")
        if self.cores is not None and self.cores != "all" and not positive_int(self.cores):
            raise LevitBenchError(f"--cores must be a positive number of cores or all, not {self.cores}")
        if self.streams is not None and not positive_int(self.streams):
            raise LevitBenchError(f"--streams must be a positive number of requests in flight, not {self.streams}")


def resolve_cores(asked: int | str | None, platform: Platform, given: bool) -> int | None:
    """The physical cores a run holds: `asked` (an int, or "all": every one this process may use),
    refused in one line when the host has fewer or the platform has no cores to hold (`given`:
    the user asked, rather than the platform's own setting)."""
    if platform.device != "cpu":
        if given:
            raise LevitBenchError(f"--cores applies to the CPU platforms, not {platform.name}")
        return None
    usable = core_locks.usable_physical_cores()
    if asked == "all":
        return usable
    if asked > usable:
        raise LevitBenchError(f"{asked} cores asked for (platform {platform.name}), but this host has "
                              f"{usable} physical core{'s' * (usable != 1)} this process may use")
    return asked


def resolve_streams(streams: int, cores: int | None, platform: Platform) -> int:
    """`streams` requests in flight, each on cores/streams of the held cores: refused in one line
    unless the cores split evenly between them."""
    if streams == 1:
        return 1
    if cores is None:
        raise LevitBenchError(f"--streams applies to the CPU platforms, not {platform.name}")
    if streams > cores or cores % streams:
        raise LevitBenchError(f"{streams} streams on {cores} core{'s' * (cores != 1)}: each stream runs on "
                              "cores/streams cores of its own, so the cores must split evenly (--cores N)")
    return streams


@dataclass(frozen=True)
class RunSettings:
    """What a request runs as, resolved once: the record starts from it, the runner is made
    with it, and a sweep's resume key compares it, whatever the request left to defaults."""

    batch: int | None  # None: the largest that fits, searched on the GPU
    precision: str
    mode: str | None  # None: decided by the runner when it loads (tvm: tuned if a database exists)
    threads: int | None  # every thread the runtime is given: one per held core
    protocol: str
    cores: int | None  # the physical cores held (None: the GPU's, none held)
    streams: int  # requests in flight at once on the held cores
    platform: Platform  # the platform as run: its `threads` are the cores resolved
    scenario: str | None = None  # the LoadGen scenario (None: the closed-loop protocol)
    scenario_settings: str | None = None  # its settings, as canonical JSON (a stored column)

    @classmethod
    def of(cls, request: RunRequest) -> "RunSettings":
        platform = get_platform(request.platform)
        runtime = get_runtime(request.runtime)
        asked = request.cores if request.cores is not None else platform.threads
        cores = resolve_cores(asked, platform, given=request.cores is not None)
        streams = resolve_streams(request.streams or platform.streams, cores, platform)
        return cls(batch=request.batch or platform.default_batch,
                   precision=runtime.resolve_precision(request.precision, platform.default_precision),
                   mode=runtime.resolve_mode(request.mode), threads=cores,
                   protocol=get_protocol(request.protocol).name, cores=cores, streams=streams,
                   platform=dataclasses.replace(platform, threads=cores, streams=streams),
                   scenario=request.scenario and request.scenario["scenario"],
                   scenario_settings=request.scenario and json.dumps(
                       {k: v for k, v in request.scenario.items() if k != "scenario"}, sort_keys=True))

    def key(self) -> dict:
        """The columns of a stored record these settings fix."""
        return {"batch": self.batch, "precision": self.precision, "mode": self.mode, "protocol": self.protocol,
                "cores": self.cores, "streams": self.streams, "scenario": self.scenario,
                "scenario_settings": self.scenario_settings}


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


@torch.no_grad()
def _reference_logits(artifact: Artifact, images: np.ndarray, threads: int) -> np.ndarray:
    """The reference outputs, computed on the `threads` cores the run holds: the unfused PyTorch
    model's logits, or for a user's ONNX model ONNX Runtime's fp32 outputs."""
    if artifact.sidecar.get("reference") == REFERENCE:  # the file as written: every graph optimisation off
        if artifact.batch is None:
            compared = images[:PARITY_IMAGES]
            return onnxruntime_outputs(str(artifact.onnx_path), compared, len(compared), optimise=False,
                                       threads=threads)
        # a static batch is fed in whole batches, as the runtime was, enough to cover the compared images
        covered = images[:math.ceil(min(len(images), PARITY_IMAGES) / artifact.batch) * artifact.batch]
        return onnxruntime_outputs(str(artifact.onnx_path), covered, artifact.batch, optimise=False,
                                   threads=threads)[:PARITY_IMAGES]
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return torch_logits(artifact.reference_model, torch.from_numpy(images[:PARITY_IMAGES]))
    finally:
        torch.set_num_threads(saved)


def _is_out_of_memory(e: BaseException) -> bool:
    return "out of memory" in str(e).lower() or "failed to allocate" in str(e).lower()


def _largest_fitting_batch(runner: Runner, artifact: Artifact) -> int:
    """The GPU protocol: the largest power-of-two batch (at most 2048) that runs."""
    batch = GPU_MAX_BATCH
    while batch >= 1:
        try:
            runner.load(artifact, batch)
            runner(runner.to_input(seeded_images(batch, artifact.resolution).numpy()))
            return batch
        except Exception as e:  # noqa: BLE001 - each runtime has its own OOM type
            if not _is_out_of_memory(e):
                raise
            torch.cuda.empty_cache()
            batch //= 2
    raise LevitBenchError("not even a batch of 1 fits on the GPU")


def _onnx_runtimes() -> list[str]:
    """The runtimes that measure an ONNX file itself."""
    found = []
    for name, spec in RUNTIMES.items():
        try:
            if not spec.runner_class().needs_pytorch_model:
                found.append(name)
        except ImportError:  # a plugin whose runner cannot be imported here
            continue
    return found


def checked_runner(request: RunRequest, workdir: Path, host: environment.HostInfo | None = None) -> Runner:
    """The request's runner, made as every runner is (its platform and its runtime's options),
    and only for a request that can be a cell: an unknown model, platform or protocol, a
    precision or mode the runtime lacks, weights that cannot be read, a host the platform
    refuses or an unreachable device raises here, in one line, before any record exists."""
    cls, settings, options = checked_options(request, workdir)
    if not cls.runs_elsewhere(options):  # a remote device is measured, not this host
        settings.platform.check_host(host or environment.host_info(), request.runtime)
    return cls(settings.platform, options)


def checked_options(request: RunRequest, workdir: Path) -> tuple[type[Runner], RunSettings, Any]:
    """`checked_runner`'s checks of the request itself, wherever it will run (a fleet's hosts
    check their own CPU): its runner class, effective settings and runtime options."""
    spec = get_spec(request.model)
    cls = get_runtime(request.runtime).runner_class()
    if spec.onnx is not None and cls.needs_pytorch_model:
        raise LevitBenchError(f"{spec.name} is the ONNX file {spec.onnx}, with no PyTorch model for "
                              f"{request.runtime}: measure it with {', '.join(_onnx_runtimes())}")
    if request.weights is not None:
        if spec.onnx is not None:
            raise LevitBenchError(f"{spec.name} is an ONNX file, which holds its own weights: --weights does not apply")
        read_checkpoint(request.weights)  # a file that is missing, unreadable or untrusted is refused now
    settings = RunSettings.of(request)
    options = cls.Options.make(request.runtime, settings.precision, settings.mode, workdir, request.runtime_options,
                               streams=settings.streams)
    if cls.runs_elsewhere(options):
        if request.cores is not None or settings.streams > 1:
            raise LevitBenchError("--cores and --streams hold this host's cores; a device behind --rpc runs "
                                  "the threads its rpc_server was started with (TVM_NUM_THREADS)")
        if request.scenario:
            raise LevitBenchError("--scenario runs on this host's runtimes; a device behind --rpc keeps the "
                                  "closed-loop protocol")
    return cls, settings, options


def new_record(request: RunRequest, host: environment.HostInfo | None = None) -> dict:
    """A record with everything known before measuring, marked failed until it succeeds."""
    spec = get_spec(request.model)
    protocol = get_protocol(request.protocol)
    settings = RunSettings.of(request)
    platform = settings.platform
    host = host or environment.host_info()
    versions = environment.package_versions()
    return {
        "uid": uuid.uuid4().hex,
        "run_id": request.run_id or new_run_id(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": spec.name,
        "family": spec.family,
        "reference": REFERENCE if spec.onnx else "torch",
        **({"params": spec.counts[0], "macs": spec.counts[1]} if spec.onnx else {}),
        "runtime": request.runtime,
        "runtime_version": versions.get(request.runtime),
        **settings.key(),
        "platform": platform.name,
        "platform_info": get_platform(request.platform).as_dict(),  # as named: its own cores and streams
        "threads": settings.threads,
        "host": host.fingerprint,
        "cpu_model": host.cpu_model,
        "host_info": host.as_dict(),
        "versions": versions,
        "protocol_params": protocol.as_dict(),
        "status": "failed",
        "error": None,
        "noisy": False,
        "load": {},
    }


Drive = Callable[..., tuple[dict, np.ndarray, list[int]]]  # scenarios.cell.drive's shape
QSL_IMAGES = 16  # the images a scenario's queries draw from, at least (and at least a batch)


def run_cell(request: RunRequest, workdir: Path, on_step: Callable[[str], None] = lambda step: None,
             on_wait: Callable[[str], None] | None = None, drive: Drive | None = None) -> dict:
    """Measure one cell; its record, ok or failed (with the reason), for the caller to store.

    A request that cannot be a cell at all (unknown model, platform or protocol, a bad batch,
    a precision or mode the runtime lacks, an unreachable device, a host the platform refuses)
    raises instead, and gives no record; so does waiting in vain for a free core. `on_wait`
    (default: `on_step`) hears whom the run waits for. A request with a scenario is measured by
    `drive` (the caller's: scenarios drive runners, `scenarios.cell.drive`) instead of the protocol.
    """
    if request.scenario and drive is None:
        raise LevitBenchError("a scenario is driven by its caller: run_cell(..., drive=scenarios.cell.drive)")
    host = environment.host_info()
    runner = checked_runner(request, workdir, host)
    try:
        record = new_record(request, host)
        _measure(runner, request, record, host, workdir, on_step, on_wait or on_step, drive)
    finally:
        runner.close()
    record["cell"] = cell_id(record)
    return record


def _gate(record: dict, outputs: np.ndarray, reference: np.ndarray) -> None:
    """Record how far `outputs` are from the reference; raise the reason if too far for the precision."""
    reference = reference.reshape(len(reference), -1)  # a user's model may give more than (batch, classes)
    compared = outputs[: len(reference)].reshape(len(reference), -1)
    record.update(
        max_abs_diff=float(np.abs(compared - reference).max()),
        max_abs_logit=float(np.abs(reference).max()),
        top1_agreement=float((compared.argmax(1) == reference.argmax(1)).mean()),
        parity_images=len(reference),
    )
    if not np.isfinite(outputs).all():
        raise LevitBenchError(f"{record['runtime']} returned non-finite logits")
    tolerance = tolerance_for(record["precision"])
    record["tolerance"] = {"max_abs_diff": tolerance.bound(record["max_abs_logit"]),
                           "top1_agreement": tolerance.top1_agreement}
    against = "ONNX Runtime fp32" if record.get("reference") == REFERENCE else "PyTorch"
    wrong = tolerance.violation(record["max_abs_diff"], record["max_abs_logit"], record["top1_agreement"], against)
    if wrong:
        raise LevitBenchError(wrong)


def _macs(model: str) -> int:
    spec = get_spec(model)
    return spec.counts[1] if spec.counts is not None else _measured_macs(spec.name)  # a user's: from its graph


@functools.lru_cache(maxsize=None)
def _measured_macs(model: str) -> int:
    return get_spec(model).measured_counts()[1]


def _rooflines(record: dict, platform, host: environment.HostInfo | None) -> dict:
    """The record's compute rate, 2 x MACs x images/s, and its share of the calibrated FMA peak
    of the cores it ran on (when `host`, the CPU it ran on, has a calibration), with the host's
    copy bandwidth: the two ceilings of a roofline."""
    gflops = 2 * _macs(record["model"]) * record["images_per_s"] / 1e9
    cores = record.get("cores") or record.get("threads") or len(record.get("pinned_cores") or ()) or 1
    on_cpu = host is not None and platform.device == "cpu"
    # the fp32 FMA peak bounds fp32 work only: int8 and bf16 kernels have their own ceilings
    peak = calibration.fma_gflops(host, cores) if on_cpu and record["precision"] == "fp32" else None
    return {"gflops": round(gflops, 3), "peak_fma_gflops": peak,
            "peak_fraction": round(gflops / peak, 4) if peak else None,
            "memory_gbps": (calibration.cached(host) or {}).get("memory_gbps") if on_cpu else None}


def _measure(runner: Runner, request: RunRequest, record: dict, host: environment.HostInfo,
             workdir: Path, on_step: Callable[[str], None], on_wait: Callable[[str], None],
             drive: Drive | None = None) -> None:
    """Fill `record` in: measured and gated (`ok`), `emulated`, or `failed` with the reason."""
    platform = runner.platform  # as run: its threads are the cores resolved
    protocol = get_protocol(request.protocol)
    batch = record["batch"]
    artifact = None
    try:
        on_step("artifact")
        artifact = ensure_artifact(workdir, record["model"], batch, request.weights, on_step)
        fp32_artifact = artifact  # the reference: its PyTorch model, or for a user's model the file itself
        if record["precision"] == "int8":
            record["fp32_artifact_sha256"] = artifact.sha256  # what `compare --by precision` pairs it with
            if runner.quantizes_onnx:  # else it quantizes the PyTorch model itself, as it loads
                artifact = ensure_quantized(artifact, record["runtime"], on_step)
        record.update(artifact_sha256=artifact.sha256, artifact=str(artifact.onnx_path), weights=artifact.weights)
        if artifact.note:
            record["artifact_note"] = artifact.note
        with core_locks.pinned(platform, request.wait_timeout_s, on_wait) as cores:
            record["pinned_cores"] = cores
            on_step("load")
            record["malloc"] = keep_freed_memory()
            memory = MemoryWatch.start()
            t0 = time.perf_counter()
            if batch is None:
                batch = _largest_fitting_batch(runner, artifact)
                record["batch"] = batch
            else:
                runner.load(artifact, batch)
            record["load_s"] = time.perf_counter() - t0
            memory.loaded()
            images = seeded_images(max(batch, QSL_IMAGES) if request.scenario else batch, artifact.resolution).numpy()
            inputs = runner.to_input(images[:batch])
            on_step("parity only (emulated)" if runner.emulated else request.scenario and
                    f"{request.scenario['scenario']} (LoadGen)" or "measure")
            timings = scenario = None
            if not runner.emulated:
                record["settle_s"] = host_load.settle(cores)
                with host_load.watch(cores) as load, thread_use.watch() as used:
                    if request.scenario:
                        scenario = drive(runner, images, batch, request.scenario,
                                         Path(workdir) / "loadgen" / record["uid"])
                    else:
                        timings = runner.measure(inputs, protocol)
                record.update(load=load.load, noisy=load.noisy, noisy_reason=load.noisy_reason,
                              busy_threads=used.busy, cpu_parallelism=used.parallelism)
            if scenario is not None:  # the outputs LoadGen's queries produced, of the images they asked for
                fields, outputs, answered = scenario
                images = images[answered]
            else:
                outputs = runner.to_numpy(runner(inputs))
                images = images[:batch]
            record.update(memory.fields())  # before the reference model runs in this process
            on_step("parity")
            reference = _reference_logits(fp32_artifact, images, max(1, len(cores)))
        description = runner.describe()
        # what the runtime confirms: the precision it compiled (openvino), the threads it has
        # (a device), the mode a default resolved to at load (tvm)
        record.update(precision=description.precision, threads=description.threads, mode=description.mode,
                      runtime_info=description.as_dict())
        device = runner.device_host()
        if device is not None:
            record.update(host=device.fingerprint, cpu_model=device.cpu_model, host_info=device.as_dict(),
                          measuring_host=host.as_dict())
        elif platform.threads and description.threads != platform.threads:
            raise LevitBenchError(f"{record['runtime']} reports {description.threads} threads, not the "
                                  f"{platform.threads} it was given (one per held core)")
        if timings is not None:
            record.update(
                first_inference_s=timings.first_call_s,
                warmup_calls=timings.warmup_calls,
                samples_ms=[s * 1e3 for s in timings.samples_s],
                wall_s=timings.wall_s and round(timings.wall_s, 4),  # several streams: the requests' wall time
                **summarise(timings.samples_s, batch, timings.wall_s),
            )
        if scenario is not None:
            record.update(fields)
        if timings is not None or scenario is not None:
            record.update(_rooflines(record, platform, host if device is None else None))
        _gate(record, outputs, reference)
        # an emulator's outputs are checked, its timings are not a measurement of anything
        record["status"] = "emulated" if runner.emulated else "ok"
    except (CoresBusy, DamagedArtifact, QuantizeError):  # not the runtime's failure: nothing was measured
        raise
    except CheckpointError as e:
        if artifact is None:  # weights that do not fit the model: refused, nothing was measured
            raise
        record["error"] = one_line(e)  # read again for the reference after measuring, and gone or changed
    except Exception as e:  # noqa: BLE001 - any failure of the runtime is this cell's result
        record["error"] = one_line(e)
        if not isinstance(e, LevitBenchError):
            record["traceback"] = traceback.format_exc(limit=8)
