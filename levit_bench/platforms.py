"""Named platforms: a measurement protocol (threads, batch, precision) plus a host check.

Plain data that every layer reads (runners measure on them, reports label by them); holding
a platform's cores while measuring is the runners' (`runners.core_locks.pinned`).

`xeon` and `arm` are the paper's single-thread CPU settings; any host of the right
architecture may run them, and the record keeps the real CPU model (an AMD EPYC measured as
`xeon` stays an AMD EPYC in every report).
"""

from __future__ import annotations

from dataclasses import dataclass

from levit_bench.environment import HostInfo
from levit_bench.errors import LevitBenchError

X86 = ("x86_64", "amd64")
ARM = ("aarch64", "arm64")
GPU_MAX_BATCH = 2048


class PlatformError(LevitBenchError):
    pass


@dataclass(frozen=True)
class Platform:
    name: str
    description: str
    device: str  # "cpu" or "cuda"
    threads: int | None  # None: every core the process may use
    default_batch: int | None  # None: the largest power of two that fits (GPU)
    default_precision: str  # "fp32", or "mixed" (autocast) on the GPU

    def check_host(self, host: HostInfo, runtime: str) -> None:
        """Refuse, in one line, a host this platform cannot be measured on."""
        if self.name == "xeon" and host.architecture not in X86:
            raise PlatformError(f"platform xeon needs an x86-64 CPU; this host is {host.architecture}")
        if self.name == "arm" and (host.architecture not in ARM or "neon" not in host.isa):
            hint = (" (`--runtime tvm` cross-compiles for ARM and runs it over RPC)" if runtime != "tvm"
                    else " (give --rpc HOST:PORT of a device's TVM rpc_server, or --rpc emulator)")
            raise PlatformError(
                f"platform arm needs an aarch64 CPU with NEON to run {runtime}; "
                f"this host is {host.architecture} ({host.cpu_model}){hint}"
            )
        if self.name == "gpu" and not host.gpu:
            raise PlatformError("platform gpu needs a CUDA GPU; torch sees none on this host")


PLATFORMS: dict[str, Platform] = {
    "xeon": Platform("xeon", "x86-64 server CPU, one pinned thread (the paper's Intel column)",
                     "cpu", threads=1, default_batch=16, default_precision="fp32"),
    "arm": Platform("arm", "aarch64 NEON CPU, one pinned thread (the paper's Graviton2 column)",
                    "cpu", threads=1, default_batch=16, default_precision="fp32"),
    "gpu": Platform("gpu", "one CUDA GPU, mixed precision, the largest power-of-two batch that fits",
                    "cuda", threads=None, default_batch=None, default_precision="mixed"),
}
ALIASES = {"graviton": "arm", "intel": "xeon", "cuda": "gpu"}


def get_platform(name: str) -> Platform:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in PLATFORMS:
        known = ", ".join([*PLATFORMS, *(f"{a} (= {t})" for a, t in ALIASES.items())])
        raise PlatformError(f"unknown platform {name!r}; known platforms: {known}")
    return PLATFORMS[key]
