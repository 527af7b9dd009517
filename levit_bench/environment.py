"""This host's hardware and software fingerprint: what every measurement is stamped with."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import levit_bench
from levit_bench.runtimes import RUNTIMES

# ISA extensions that decide which kernels a runtime can use.
_X86_ISA = (
    "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
)
_ARM_ISA = ("asimd", "asimdhp", "asimddp", "fphp", "sve", "sve2", "bf16", "i8mm")
# ARM cores by (implementer, part) from /proc/cpuinfo, for hosts whose kernel gives no name.
_ARM_PARTS = {
    ("0x41", "0xd08"): "ARM Cortex-A72",
    ("0x41", "0xd0b"): "ARM Cortex-A76",
    ("0x41", "0xd0c"): "ARM Neoverse-N1",
    ("0x41", "0xd40"): "ARM Neoverse-V1",
    ("0x41", "0xd49"): "ARM Neoverse-N2",
    ("0x41", "0xd4f"): "ARM Neoverse-V2",
}
# Distribution name (PyPI) of each package whose version goes into every record, besides
# each runtime's own (levit_bench.runtimes).
PACKAGES = {"torch": "torch", "numpy": "numpy", "onnx": "onnx", "onnxsim": "onnxsim", "nncf": "nncf"}


@dataclass(frozen=True)
class HostInfo:
    cpu_model: str
    architecture: str
    logical_cores: int
    physical_cores: int | None
    usable_cores: int
    isa: tuple[str, ...]
    memory_bytes: int
    os: str  # system, kernel release and distribution
    os_family: str  # the same without the kernel release
    gpu: str | None
    fingerprint: str = field(default="")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["isa"] = list(self.isa)
        d["memory_gib"] = round(self.memory_bytes / 2**30, 1)
        return d


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _cpuinfo_fields(text: str) -> list[dict[str, str]]:
    """One dict per processor block of /proc/cpuinfo."""
    blocks = []
    for chunk in text.strip().split("\n\n"):
        entry = {}
        for line in chunk.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                entry[key.strip()] = value.strip()
        if entry:
            blocks.append(entry)
    return blocks


def _sysctl(name: str) -> str:
    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_model(blocks: list[dict[str, str]], arch: str) -> str:
    first = blocks[0] if blocks else {}
    for key in ("model name", "Model", "cpu model"):
        if first.get(key):
            return first[key]
    part = (first.get("CPU implementer", ""), first.get("CPU part", ""))
    if part in _ARM_PARTS:
        return _ARM_PARTS[part]
    if platform.system() == "Darwin":
        return _sysctl("machdep.cpu.brand_string") or f"Apple {arch}"
    return platform.processor() or f"unknown {arch} CPU"


def _isa(blocks: list[dict[str, str]], arch: str) -> tuple[str, ...]:
    first = blocks[0] if blocks else {}
    flags = set((first.get("flags") or first.get("Features") or "").split())
    if arch in ("aarch64", "arm64"):
        if platform.system() == "Darwin":
            flags.add("asimd")  # every Apple silicon core has Advanced SIMD
        found = [f for f in _ARM_ISA if f in flags]
        return tuple(["neon"] + found) if "asimd" in flags else tuple(found)
    return tuple(f for f in _X86_ISA if f in flags)


def _physical_cores(blocks: list[dict[str, str]]) -> int | None:
    cores = {(b.get("physical id"), b.get("core id")) for b in blocks if "core id" in b}
    return len(cores) or None


def _mem_total(meminfo: str) -> int:
    """MemTotal of a /proc/meminfo text, in bytes (0 when absent)."""
    return next((int(line.split()[1]) * 1024 for line in meminfo.splitlines() if line.startswith("MemTotal:")), 0)


def _memory_bytes() -> int:
    if total := _mem_total(_read("/proc/meminfo")):
        return total
    if platform.system() == "Darwin":
        value = _sysctl("hw.memsize")
        if value.isdigit():
            return int(value)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _pretty_name(os_release: str) -> str:
    """PRETTY_NAME of an /etc/os-release text ('' when absent)."""
    return next((line.split("=", 1)[1].strip().strip('"') for line in os_release.splitlines()
                 if line.startswith("PRETTY_NAME=")), "")


def _distribution() -> str:
    if name := _pretty_name(_read("/etc/os-release")):
        return name
    if platform.system() == "Darwin":
        return f"macOS {platform.mac_ver()[0]}"
    return ""


def _with_distribution(name: str, distribution: str) -> str:
    return f"{name} ({distribution})" if distribution else name


def _gpu() -> str | None:
    import torch

    if not torch.cuda.is_available():
        return None
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return ", ".join(names)


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def fingerprint(host: HostInfo) -> str:
    """A short hash of what makes two hosts comparable: CPU, cores, ISA, memory, OS, GPU.

    The kernel release is left out (an update does not make it another machine); memory is
    rounded to whole GiB so small reservations do not change it.
    """
    stable = {
        "cpu_model": host.cpu_model,
        "architecture": host.architecture,
        "logical_cores": host.logical_cores,
        "isa": list(host.isa),
        "memory_gib": round(host.memory_bytes / 2**30),
        "os": host.os_family,
        "gpu": host.gpu,
    }
    return hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()[:12]


def host_info() -> HostInfo:
    arch = platform.machine().lower()
    blocks = _cpuinfo_fields(_read("/proc/cpuinfo"))
    distribution = _distribution()
    host = HostInfo(
        cpu_model=_cpu_model(blocks, arch),
        architecture=arch,
        logical_cores=os.cpu_count() or 1,
        physical_cores=_physical_cores(blocks),
        usable_cores=_usable_cores(),
        isa=_isa(blocks, arch),
        memory_bytes=_memory_bytes(),
        os=_with_distribution(f"{platform.system()} {platform.release()}", distribution),
        os_family=_with_distribution(platform.system(), distribution),
        gpu=_gpu(),
    )
    return dataclasses.replace(host, fingerprint=fingerprint(host))


def host_info_from_texts(architecture: str, cpuinfo: str, meminfo: str, os_release: str,
                         fallback_cpu: str) -> HostInfo:
    """A remote device described by its /proc/cpuinfo, /proc/meminfo and /etc/os-release.

    Used for devices reached over TVM RPC, where files are all there is to read (and TVM's
    RPC cannot read /proc, whose files have no size); `fallback_cpu` (what the user said of
    the device, and its address) names the CPU when cpuinfo is empty, so that two unknown
    devices never share a fingerprint.
    """
    blocks = _cpuinfo_fields(cpuinfo)
    distribution = _pretty_name(os_release)
    memory = _mem_total(meminfo)
    processors = len([b for b in blocks if "processor" in b]) or 1
    first = blocks[0] if blocks else {}
    part = (first.get("CPU implementer", ""), first.get("CPU part", ""))
    cpu = first.get("model name") or _ARM_PARTS.get(part) or fallback_cpu
    host = HostInfo(
        cpu_model=cpu, architecture=architecture, logical_cores=processors,
        physical_cores=_physical_cores(blocks), usable_cores=processors, isa=_isa(blocks, architecture),
        memory_bytes=memory, os=_with_distribution("Linux", distribution),
        os_family=_with_distribution("Linux", distribution), gpu=None,
    )
    return dataclasses.replace(host, fingerprint=fingerprint(host))


def package_versions() -> dict[str, str | None]:
    """Versions of python, levit-bench and each runtime package (None: not installed)."""
    versions: dict[str, str | None] = {
        "python": platform.python_version(),
        "levit-bench": levit_bench.__version__,
    }
    runtime_packages = {name: spec.package for name, spec in RUNTIMES.items() if spec.package}
    for name, dist in {**PACKAGES, **runtime_packages}.items():
        try:
            versions[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
