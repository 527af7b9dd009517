"""ExecuTorch's own aarch64 runtime on the emulated board: a `.pte` built on this host, run under
QEMU by a small C++ program (`pte_runner.cpp`), for parity only. Emulated timings say nothing
about ARM speed, so none are taken.

The executorch Python package cannot load in the arm64 root: its aarch64 bindings link libtorch,
and torch's only aarch64 wheel of the pinned version is a CUDA build whose CUDA libraries PyPI
does not carry for aarch64. The runtime itself does not need torch: the aarch64 executorch wheel
(installed in the root, `arm_emulator.WHEELS`) ships its runtime, XNNPACK backend and kernels as
shared libraries with their headers, and the runner is cross-compiled against them here.

QEMU emulates a Neoverse N1, Graviton2's core (the paper's ARM platform). Its default CPU,
`max`, has SME, and under QEMU 7.2 XNNPACK's SME int8 kernels gave levit_128's logits 0.145 off
(40% of the largest logit) where with SME off, or as a named core, they match x86's to 5e-3.
A named core has the features a real board has.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from levit_bench.devices import arm_emulator
from levit_bench.errors import LevitBenchError
from levit_bench.workdir import atomic_path, cache_dir

CPU = "neoverse-n1"
SOURCE = Path(__file__).with_name("pte_runner.cpp")
CROSS_COMPILER = "aarch64-linux-gnu-g++"
INSTALL_HINT = "apt-get install g++-aarch64-linux-gnu"
# the runtime, the XNNPACK delegate, the kernels of what XNNPACK does not take, its thread pool;
# linked whether or not a symbol is used: kernels and backends register themselves when loaded
LIBRARIES = ("executorch", "executorch_backend_xnnpack", "executorch_kernels_optimized",
             "executorch_kernels_quantized", "executorch_threadpool")
# as the wheel's executorch-config.cmake says a consumer must compile: its c10 headers would
# include a header generated inside a PyTorch build, and its libraries are built with the tracer
DEFINES = ("C10_USING_CUSTOM_GENERATED_MACROS", "ET_EVENT_TRACER_ENABLED")
RUN_TIMEOUT_S = 900
# Linux's aarch64 feature bits (uapi/asm/hwcap.h) named as /proc/cpuinfo's Features line names them
_HWCAP = {0: "fp", 1: "asimd", 3: "aes", 8: "atomics", 9: "fphp", 10: "asimdhp", 20: "asimddp", 22: "sve"}
_HWCAP2 = {1: "sve2", 13: "i8mm", 14: "bf16", 23: "sme"}


def _guest_executorch(root: Path) -> Path:
    return root / arm_emulator.SITE_PACKAGES / "executorch"


def _guest_library_dir(root: Path) -> str:
    """The wheel's library folder as the aarch64 loader sees it under `-L ROOT`."""
    return "/" + str(_guest_executorch(root).relative_to(root) / "lib")


def ensure_runner(on_step: Callable[[str], None] = lambda step: None) -> tuple[Path, Path]:
    """The arm64 root (built on first use) and the runner compiled for it, kept in the cache under
    a key of its source and the root's executorch."""
    root = arm_emulator.ensure_root(on_step)
    compiler = arm_emulator.require_tool(CROSS_COMPILER, INSTALL_HINT)
    executorch = _guest_executorch(root)
    key = hashlib.sha256(SOURCE.read_bytes() + arm_emulator.WHEELS["executorch"].encode()).hexdigest()[:16]
    binary = cache_dir() / "arm-emulator" / f"pte_runner-{key}"
    if binary.is_file():
        return root, binary
    on_step("cross-compiling the ExecuTorch runner for aarch64")
    binary.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(binary) as staged:
        command = [compiler, "-std=c++17", "-O2", *(f"-D{name}" for name in DEFINES),
                   "-Wno-deprecated-declarations", f"-I{executorch / 'include'}",
                   f"-I{executorch / 'include/executorch/runtime/core/portable_type/c10'}",
                   str(SOURCE), "-o", str(staged), f"-L{executorch / 'lib'}", "-Wl,--no-as-needed",
                   *(f"-l{name}" for name in LIBRARIES), f"-Wl,-rpath,{_guest_library_dir(root)}"]
        done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            errors = [line for line in done.stderr.splitlines() if "error" in line] or done.stderr.splitlines()
            raise LevitBenchError(f"cross-compiling {SOURCE.name} failed: {(errors or ['(no output)'])[0].strip()}")
        staged.chmod(0o755)
    return root, binary


def run_pte(pte: Path, images: np.ndarray, threads: int, root: Path, runner: Path) -> tuple[np.ndarray, dict]:
    """`pte`'s output on `images` (float32, NCHW) computed by ExecuTorch's aarch64 runtime under
    QEMU on `threads` threads, and what the runner said of the CPU it ran on."""
    qemu = arm_emulator.require_tool("qemu-aarch64-static", arm_emulator.INSTALL_HINT)
    with tempfile.TemporaryDirectory(prefix="levit-bench-pte-") as scratch:
        given, taken = Path(scratch) / "input.f32", Path(scratch) / "output.f32"
        np.ascontiguousarray(images, np.float32).tofile(given)
        command = [qemu, "-cpu", CPU, "-L", str(root), str(runner), str(pte), str(given), str(taken), str(threads),
                   *map(str, images.shape)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                  timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise LevitBenchError(f"the emulated ExecuTorch run took over {RUN_TIMEOUT_S} s") from None
        if done.returncode != 0:
            failures = [line for line in done.stderr.splitlines() if line.startswith("pte_runner:")]
            reason = failures[-1] if failures else arm_emulator.last_line(done.stderr)
            raise LevitBenchError(f"the emulated ExecuTorch run failed (exit {done.returncode}): {reason}")
        try:
            said = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            raise LevitBenchError(f"the emulated ExecuTorch run said nothing it should: {done.stdout[-200:]!r}") from None
        outputs = np.fromfile(taken, np.float32).reshape(said["shape"])
    return outputs, said


def board_cpuinfo(said: dict) -> str:
    """A /proc/cpuinfo of the emulated CPU, from what the runner read of it (QEMU's user mode
    shows the guest this host's own /proc/cpuinfo)."""
    midr = said["midr"]
    features = [name for bit, name in _HWCAP.items() if said["hwcap"] >> bit & 1]
    features += [name for bit, name in _HWCAP2.items() if said["hwcap2"] >> bit & 1]
    return (f"processor\t: 0\nFeatures\t: {' '.join(features)}\nCPU implementer\t: {midr >> 24 & 0xff:#x}\n"
            f"CPU variant\t: {midr >> 20 & 0xf:#x}\nCPU part\t: {midr >> 4 & 0xfff:#05x}\n"
            f"CPU revision\t: {midr & 0xf}\n")


def os_release(root: Path) -> str:
    try:
        return (root / "usr/lib/os-release").read_text()
    except OSError:
        return ""


def host_memory() -> str:
    """The board's memory is this host's: QEMU's user mode runs in this host's address space."""
    try:
        return Path("/proc/meminfo").read_text()
    except OSError:
        return ""
