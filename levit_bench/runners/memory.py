"""A cell's memory, measured in its own process: what loading the model added to the resident
set, and the resident set's peak while the model loaded and ran; and how the process's
allocator is told to keep freed memory, so that no runtime pays page faults on every call.

The peak is the kernel's high-water mark (VmHWM). It is reset just before loading (Linux:
writing 5 to /proc/self/clear_refs), so an export or an import earlier in the same process
does not count; where it cannot be reset the peak is the process's whole lifetime
(`peak_since_load` False).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

MIB = 2**20
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters
_NEVER_TRIM = 2**31 - 1


def keep_freed_memory() -> dict:
    """Tell glibc's malloc to keep what is freed for reuse: no mmap for large blocks
    (M_MMAP_MAX 0) and no returning of the heap's top to the kernel (M_TRIM_THRESHOLD at its
    maximum). Left as it is, every torch call that allocates a large activation maps fresh
    pages and faults on each one: on the reference VM 13,000-49,000 minor faults per call for
    levit_128 to levit_384 at batch 16, and torch's speed swung from 37 to 97 images/s between
    processes. ONNX Runtime and OpenVINO keep their own arenas (no faults either way); every
    runtime runs under the same setting, which the record keeps."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None or sys.platform != "linux":
        return {"allocator": "left as it is (not glibc)"}
    done = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM) == 1
    return {"allocator": "glibc", "M_MMAP_MAX": 0, "M_TRIM_THRESHOLD": _NEVER_TRIM} if done else \
        {"allocator": "glibc refused mallopt"}


def resident_mb() -> float:
    return psutil.Process().memory_info().rss / MIB


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
    return peak / (MIB if sys.platform == "darwin" else 1024)


@dataclass
class MemoryWatch:
    """Started before the model loads; `loaded()` after it loads, `fields()` after it ran."""

    before_mb: float
    peak_since_load: bool
    load_rss_mb: float | None = None

    @classmethod
    def start(cls) -> "MemoryWatch":
        reset = _reset_peak()
        return cls(resident_mb(), reset)

    def loaded(self) -> None:
        self.load_rss_mb = resident_mb() - self.before_mb

    def fields(self) -> dict:
        return {"peak_rss_mb": round(_peak_mb(), 1),
                "load_rss_mb": None if self.load_rss_mb is None else round(self.load_rss_mb, 1),
                "peak_since_load": self.peak_since_load}
