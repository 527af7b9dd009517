"""Apache TVM: the exported ONNX compiled by Relax for this CPU, or cross-compiled for ARM.

`xeon` compiles for the host's LLVM CPU and runs the Relax VM here. `arm` cross-compiles an
aarch64+NEON library and, on an x86 host, runs it on a device behind TVM RPC (`--rpc`), timed
there by the VM's time evaluator; an RPC server that is levit-bench's QEMU emulator gives
outputs for a parity check only (`emulated`: its timings mean nothing and are not stored).
Schedules are `tuned` when the work directory holds a MetaSchedule database for the model and
target (from `levit-bench tune`), else TVM's defaults (`untuned`); the record says which.
"""

from __future__ import annotations

import contextlib
import platform as host_platform
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from levit_bench import environment
from levit_bench.platforms import ARM
from levit_bench.runners.artifacts import Artifact
from levit_bench.runners.base import Runner, RunnerError, RunnerOptions, RuntimeDescription
from levit_bench.runners.measure import Protocol, Timings, measure_timed
from levit_bench.runners.profiling import Profile
from levit_bench.runners.tvm import rpc as tvm_rpc
from levit_bench.runners.tvm.api import import_tvm, thread_count, tvm_version
from levit_bench.runners.tvm.target import arm_target, check_target, host_target, target_features


def platform_target(platform_name: str, threads: int | None, mcpu: str | None) -> dict:
    """The TVM target a platform compiles for: this host's CPU (xeon), aarch64+NEON (arm)."""
    if platform_name == "arm":
        return arm_target(mcpu, threads)
    if platform_name == "xeon":
        target = host_target(threads)
        if mcpu:
            target["mcpu"] = mcpu
        return target
    raise RunnerError(f"the tvm runtime is measured on the CPU platforms (xeon, arm), not {platform_name}")


@dataclass(frozen=True)
class TvmOptions(RunnerOptions):
    rpc: str | None = None  # a device's RPC server HOST:PORT, a tracker's (with rpc_key), or "emulator"
    rpc_key: str | None = None
    mcpu: str | None = None  # the LLVM CPU to compile for (default: this host's; generic aarch64)


class TvmRunner(Runner):
    runtime = "tvm"
    Options = TvmOptions
    multi_stream = True  # a VM per stream (this host's; a device behind --rpc runs one)

    def __init__(self, platform, options: TvmOptions):
        super().__init__(platform, options)
        if self.precision != "fp32":
            raise RunnerError(f"the tvm runtime compiles the fp32 graph; precision {self.precision} is not offered")
        if options.rpc and platform.base != "arm":
            raise RunnerError(f"--rpc runs on a remote ARM device: use it with --platform arm, not {platform.name}")
        self.rpc = tvm_rpc.resolve_address(options.rpc, options.rpc_key)
        local_arm = host_platform.machine().lower() in ARM
        if platform.base == "arm" and self.rpc is None and not local_arm:
            raise RunnerError(
                "platform arm on this x86-64 host runs the cross-compiled library on a device: "
                "--rpc HOST:PORT (a TVM rpc_server there), --rpc-tracker HOST:PORT --rpc-key KEY, "
                "or the emulator (`levit-bench arm-emulator start`, then --rpc emulator)"
            )
        if self.rpc is not None:
            self.rpc.check_reachable()
        import_tvm()
        self.workdir = options.workdir
        self.emulated = tvm_rpc.is_emulated(self.rpc)
        self.target = platform_target(platform.base, self.stream_threads, options.mcpu)
        check_target(self.target)
        self._restore = contextlib.ExitStack()  # undone in close()
        self._restore.enter_context(thread_count(self.stream_threads))

    @classmethod
    def sweep_modes(cls, model: str, workdir) -> list[str | None]:
        """Untuned, plus tuned where the work directory has a tuning database for the model."""
        from levit_bench.runners.tvm.library import has_tuning

        return ["untuned", *(["tuned"] if has_tuning(workdir, model) else [])]

    @classmethod
    def runs_elsewhere(cls, options: TvmOptions) -> bool:
        return options.rpc is not None

    def load(self, artifact: Artifact, batch: int) -> None:
        from levit_bench.runners.tvm.library import build_library, resolve_schedules
        from levit_bench.runners.tvm.vm import LocalVm, RemoteVm

        if artifact.batch not in (batch, None):
            raise RunnerError(f"the artifact has batch {artifact.batch}, the run asks for {batch}")
        if artifact.batch is None:
            raise RunnerError("TVM compiles static shapes: export with --batch N, not --dynamic-batch")
        self.schedules = resolve_schedules(self.workdir, artifact.model, self.target, self.mode)
        self.mode = self.schedules  # a default (None) is decided here: tuned when a database exists
        self.library = build_library(self.workdir, artifact, self.target, self.schedules)
        if self.rpc is not None:
            self.vm = RemoteVm(tvm_rpc.connect(self.rpc), self.library.path)
        else:
            self.vms = [LocalVm(self.library.path, self.stream_threads) for _ in range(self.streams)]
            self.vm = self.vms[0]

    def to_input(self, images: np.ndarray) -> Any:
        return self.vm.tensor(images)

    def stream_calls(self) -> list:
        """A VM per stream, each called from a thread of its own: TVM's thread pool is the calling
        thread's, so each stream's thread sizes its own pool on its first call."""
        return [vm.in_any_thread() for vm in self.vms]

    def __call__(self, inputs: Any) -> Any:
        return self.vm(inputs)

    def to_numpy(self, outputs: Any) -> np.ndarray:
        from levit_bench.runners.tvm.vm import to_numpy

        return to_numpy(outputs)

    def measure(self, inputs: Any, protocol: Protocol) -> Timings:
        """On a device, each sample is timed there by the VM's time evaluator, not over RPC."""
        if self.rpc is None:
            return super().measure(inputs, protocol)
        return measure_timed(lambda: self.vm.time_calls(inputs, 1)[0], protocol)

    def profile(self, inputs: Any, protocol: Protocol) -> Profile:
        """Every VM call timed by the VM's instrument hook, over the protocol's calls; the
        library's wiring (`wiring.py`) says which graph tensors each kernel writes and reads."""
        from levit_bench.runners.tvm.wiring import timed_kernels

        if self.rpc is not None:
            raise RunnerError("profile times kernels on this host; a library on a device behind --rpc is not profiled")
        calls: list[list[tuple[str, float]]] = []
        with self.vm.instrumented() as events:
            def timed_call() -> float:
                events.clear()
                begun = time.perf_counter()
                self.vm(inputs)
                return time.perf_counter() - begun

            timings = measure_timed(timed_call, protocol, after_sample=lambda: calls.append(list(events)))
        kernels = timed_kernels(calls, self.library.manifest["wiring"])
        return Profile(self.runtime, len(calls), statistics.fmean(timings.samples_s) * 1e3, kernels,
                       {"profiler": "relax.VirtualMachine.set_instrument (each VM call timed)",
                        "schedules": self.schedules})

    def close(self) -> None:
        self._restore.close()

    def device_host(self) -> environment.HostInfo | None:
        """The device's fingerprint when the run is remote (None: this host)."""
        if self.rpc is None:
            return None
        return environment.host_info_from_texts(
            architecture="aarch64",
            cpuinfo=self.vm.download("/proc/cpuinfo"),
            meminfo=self.vm.download("/proc/meminfo"),
            os_release=self.vm.download("/etc/os-release"),
            fallback_cpu=f"aarch64 {self.target.get('mcpu', 'CPU')} at {self.rpc}"
            + (" (QEMU emulation)" if self.emulated else ""),
        )

    def describe(self) -> RuntimeDescription:
        if self.rpc is not None:
            count = self.vm.remote_function("runtime.NumThreads")
            threads = int(count()) if count is not None else self.platform.threads
        else:
            threads = self.vm.threads() * self.streams
        return RuntimeDescription(
            runtime=self.runtime, version=tvm_version(),
            device=f"rpc {self.rpc}" if self.rpc else "cpu", precision="fp32", threads=threads,
            mode=self.schedules,
            details={
                "target": self.target,
                "features": target_features(self.target),
                "schedules": self.schedules,
                "tasks": self.library.manifest["tasks"],
                "tuned_tasks": self.library.manifest["tuned_tasks"],
                "database_records": self.library.manifest["database_records"],
                "library": str(self.library.path),
                "library_sha256": self.library.sha256,
                "rpc": str(self.rpc) if self.rpc else None,
                "emulated": self.emulated,
            },
        )
