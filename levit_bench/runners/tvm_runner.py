"""Apache TVM: the exported ONNX compiled by Relax for this CPU, or cross-compiled for ARM.

`xeon` compiles for the host's LLVM CPU and runs the Relax VM here. `arm` cross-compiles an
aarch64+NEON library and, on an x86 host, runs it on a device behind TVM RPC (`--rpc`), timed
there by the VM's time evaluator; an RPC server that is levit-bench's QEMU emulator gives
outputs for a parity check only (`emulated`: its timings mean nothing and are not stored).
Schedules are `tuned` when the work directory holds a MetaSchedule database for the model and
target (from `levit-bench tune`), else TVM's defaults (`untuned`); the record says which.
"""

from __future__ import annotations

import os
import platform as host_platform
from pathlib import Path
from typing import Any

import numpy as np

from levit_bench import environment
from levit_bench.platforms import ARM
from levit_bench.runners.artifacts import Artifact
from levit_bench.runners.base import Runner, RunnerError, RuntimeDescription
from levit_bench.runners.measure import Protocol, Timings, measure_timed
from levit_bench.runners.tvm_backend import RpcAddress


def platform_target(platform_name: str, threads: int | None, mcpu: str | None) -> dict:
    from levit_bench.runners import tvm_backend

    if platform_name == "arm":
        return tvm_backend.arm_target(mcpu, threads)
    if platform_name == "xeon":
        target = tvm_backend.host_target(threads)
        if mcpu:
            target["mcpu"] = mcpu
        return target
    raise RunnerError(f"the tvm runtime is measured on the CPU platforms (xeon, arm), not {platform_name}")


def _emulated(address: RpcAddress | None) -> bool:
    if address is None or address.key:
        return False
    from levit_bench.runners import arm_emulator

    return arm_emulator.is_emulator_address(address.host, address.port)


class TvmRunner(Runner):
    runtime = "tvm"

    def __init__(self, platform, precision=None, mode=None, *, workdir: Path | None = None,
                 rpc: RpcAddress | None = None, mcpu: str | None = None):
        super().__init__(platform, precision, mode)
        if self.precision != "fp32":
            raise RunnerError(f"the tvm runtime compiles the fp32 graph; precision {self.precision} is not offered")
        if mode is not None and mode not in ("tuned", "untuned"):
            raise RunnerError(f"tvm modes are tuned, untuned, not {mode}")
        local_arm = host_platform.machine().lower() in ARM
        if platform.name == "arm" and rpc is None and not local_arm:
            raise RunnerError(
                "platform arm on this x86-64 host runs the cross-compiled library on a device: "
                "--rpc HOST:PORT (a TVM rpc_server there), --rpc-tracker HOST:PORT --rpc-key KEY, "
                "or the emulator (`levit-bench arm-emulator start`, then --rpc emulator)"
            )
        if rpc is not None:
            rpc.check_reachable()
        if platform.threads:  # the runtime's thread pool reads this once, when it starts
            os.environ["TVM_NUM_THREADS"] = str(platform.threads)
        from levit_bench.runners import tvm_backend

        self.backend = tvm_backend
        self.backend.import_tvm()
        self.workdir = Path(workdir) if workdir else Path.cwd()
        self.rpc = rpc
        self.emulated = _emulated(rpc)
        self.target = platform_target(platform.name, platform.threads, mcpu)
        self.backend.check_target(self.target)

    def load(self, artifact: Artifact, batch: int) -> None:
        from levit_bench.runners.tvm_library import build_library, resolve_schedules

        if artifact.batch not in (batch, None):
            raise RunnerError(f"the artifact has batch {artifact.batch}, the run asks for {batch}")
        if artifact.batch is None:
            raise RunnerError("TVM compiles static shapes: export with --batch N, not --dynamic-batch")
        self.schedules = resolve_schedules(self.workdir, artifact.model, self.target, self.mode)
        self.library = build_library(self.workdir, artifact, self.target, self.schedules)
        if self.rpc is not None:
            self.session = self.backend.connect(self.rpc)
            self.vm = self.backend.RemoteVm(self.session, self.library.path)
        else:
            self.vm = self.backend.LocalVm(self.library.path)

    def to_input(self, images: np.ndarray) -> Any:
        return self.vm.tensor(images)

    def __call__(self, inputs: Any) -> Any:
        return self.vm(inputs)

    def to_numpy(self, outputs: Any) -> np.ndarray:
        return self.backend.to_numpy(outputs)

    def measure(self, inputs: Any, protocol: Protocol) -> Timings:
        """On a device, each sample is timed there by the VM's time evaluator, not over RPC."""
        if self.rpc is None:
            return super().measure(inputs, protocol)
        return measure_timed(lambda: self.vm.time_calls(inputs, 1)[0], protocol)

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
        threads = self.platform.threads
        if self.rpc is not None:
            count = self.vm.remote_function("runtime.NumThreads")
            threads = int(count()) if count is not None else threads
        return RuntimeDescription(
            runtime=self.runtime, version=self.backend.tvm_version(),
            device=f"rpc {self.rpc}" if self.rpc else "cpu", precision="fp32", threads=threads,
            mode=self.schedules,
            details={
                "target": self.target,
                "features": self.backend.target_features(self.target),
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
