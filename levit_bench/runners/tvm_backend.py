"""Every Apache TVM call of the project: import, targets, compile, libraries, VMs, RPC.

Written against the Relax-era API of apache-tvm 0.27 (`tvm.relax.frontend.onnx`,
`tvm.compile`, targets as JSON dicts, `tvm.runtime.tensor`); the version range is checked when
TVM is imported, because these names move between releases. Tuning lives beside this module in
`tvm_tuning.py` and uses the same helpers.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from levit_bench.runners.base import RunnerError

SUPPORTED = ((0, 27), (0, 28))  # [low, high): the API this module is written for
CROSS_COMPILER = "aarch64-linux-gnu-gcc"
ARM_TRIPLE = "aarch64-linux-gnu"


def tvm_version() -> str:
    try:
        return metadata.version("apache-tvm")
    except metadata.PackageNotFoundError:
        raise RunnerError("apache-tvm is not installed (pip install 'levit-bench[tvm]')") from None


def import_tvm():
    """`tvm`, after checking that the installed release has the API this module uses."""
    version = tvm_version()
    major_minor = tuple(int(p) for p in version.split(".")[:2])
    if not SUPPORTED[0] <= major_minor < SUPPORTED[1]:
        raise RunnerError(
            f"apache-tvm {version} is installed; levit-bench is written for "
            f">={'.'.join(map(str, SUPPORTED[0]))},<{'.'.join(map(str, SUPPORTED[1]))}"
        )
    import tvm
    import tvm.relax  # noqa: F401 - registers the Relax passes and the VM

    return tvm


# ---- targets -------------------------------------------------------------------------------

_VECTOR_FEATURES = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512vnni", "avx512bf16",
                    "avx512fp16", "amx-tile", "neon", "fp-armv8", "dotprod", "sve", "sve2", "i8mm")


def host_target(threads: int | None) -> dict:
    """The LLVM target of this CPU as TVM detects it (e.g. mcpu `znver4`)."""
    import_tvm()
    from tvm.target import codegen

    target: dict[str, Any] = {"kind": "llvm", "mcpu": str(codegen.llvm_get_system_cpu())}
    if threads:
        target["num-cores"] = threads
    return target


def arm_target(mcpu: str | None, threads: int | None) -> dict:
    """aarch64 with NEON; `mcpu` (e.g. `neoverse-n1` for Graviton2) when the user names the core."""
    target: dict[str, Any] = {"kind": "llvm", "mtriple": ARM_TRIPLE, "mattr": ["+neon"]}
    if mcpu:
        target["mcpu"] = mcpu
    if threads:
        target["num-cores"] = threads
    return target


def target_features(target: dict) -> list[str]:
    """The vector ISA features LLVM enables for `target` (what its kernels may use)."""
    tvm = import_tvm()
    from tvm.target import codegen

    try:
        features = codegen.llvm_get_cpu_features(tvm.target.Target(target))
    except Exception:  # noqa: BLE001 - a CPU name LLVM does not know: no feature list
        return []
    return sorted(f for f in (str(f) for f in features) if f in _VECTOR_FEATURES)


def check_target(target: dict) -> None:
    """Refuse a target LLVM cannot build for (e.g. a misspelt `--mcpu`) in one line."""
    tvm = import_tvm()
    from tvm.target import codegen

    mcpu = target.get("mcpu")
    if not mcpu:
        return
    archlist = [str(c) for c in codegen.llvm_get_cpu_archlist(tvm.target.Target({k: v for k, v in target.items() if k != "mcpu"}))]
    if archlist and mcpu not in archlist:
        raise RunnerError(f"LLVM knows no CPU {mcpu!r} for {target.get('mtriple', 'this host')}")


def target_key(target: dict) -> str:
    """A directory-safe name for a target: triple-or-host, cpu, and a hash of the whole dict."""
    digest = hashlib.sha256(json.dumps(target, sort_keys=True).encode()).hexdigest()[:8]
    arch = "aarch64" if target.get("mtriple", "").startswith("aarch64") else "host"
    return f"{arch}-{target.get('mcpu', 'generic')}-{digest}"


def is_cross(target: dict) -> bool:
    return "mtriple" in target


# ---- import and compile ----------------------------------------------------------------------

def relax_module(onnx_path: Path):
    """The exported ONNX as a Relax module (weights as constants), fused as for tuning.

    Tuning extracts its tasks from this fused module and the build applies the tuning
    database to the same module, so the two always see the same PrimFuncs.
    """
    import onnx

    tvm = import_tvm()
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    mod = from_onnx(onnx.load(str(onnx_path)), keep_params_in_input=False)
    return tvm.transform.Sequential([
        relax.transform.DecomposeOpsForInference(),
        relax.transform.CanonicalizeBindings(),
        relax.pipeline.zero_pipeline(),
    ])(mod)


@dataclass(frozen=True)
class Compiled:
    executable: Any
    tasks: int  # PrimFuncs in the module
    tuned_tasks: int  # of which the tuning database held a schedule


def compile_module(onnx_path: Path, target: dict, database_dir: Path | None) -> Compiled:
    """Compile for `target`, with the tuning database's schedules where it has them."""
    tvm = import_tvm()
    from tvm import relax

    tvm_target = tvm.target.Target(target)
    with tvm_target:
        mod = relax_module(onnx_path)
        tasks = sum(1 for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc))
        tuned = 0
        if database_dir is not None:
            database = open_database(database_dir)
            with database:
                mod = relax.transform.MetaScheduleApplyDatabase()(mod)
            tuned = sum(1 for f in mod.functions.values()
                        if isinstance(f, tvm.tirx.PrimFunc) and f.attrs is not None
                        and "tirx.is_scheduled" in f.attrs)
        executable = tvm.compile(mod, target=tvm_target, relax_pipeline=relax.pipeline.default_build_pipeline())
    return Compiled(executable, tasks, tuned)


def open_database(database_dir: Path):
    from tvm.s_tir import meta_schedule as ms

    database_dir.mkdir(parents=True, exist_ok=True)
    return ms.database.JSONDatabase(
        path_workload=str(database_dir / "database_workload.json"),
        path_tuning_record=str(database_dir / "database_tuning_record.json"),
        module_equality="structural",
    )


def database_records(database_dir: Path) -> int:
    """How many measured schedules the database holds (0 when there is none)."""
    path = database_dir / "database_tuning_record.json"
    if not path.is_file():
        return 0
    with path.open() as f:
        return sum(1 for line in f if line.strip())


def export_library(executable, path: Path, target: dict) -> None:
    """Write the compiled module as a shared library, cross-linked for aarch64 targets."""
    if is_cross(target):
        if shutil.which(CROSS_COMPILER) is None:
            raise RunnerError(
                f"the cross compiler {CROSS_COMPILER} is missing: apt-get install gcc-aarch64-linux-gnu"
            )
        executable.export_library(str(path), cc=CROSS_COMPILER)
    else:
        executable.export_library(str(path))


# ---- running -----------------------------------------------------------------------------------

class LocalVm:
    """The Relax VM on this host's CPU."""

    def __init__(self, library: Path):
        tvm = import_tvm()
        from tvm import relax

        self.tvm = tvm
        self.device = tvm.cpu()
        self.vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), self.device)

    def tensor(self, array: np.ndarray):
        return self.tvm.runtime.tensor(array, device=self.device)

    def __call__(self, tensor):
        return self.vm["main"](tensor)


@dataclass(frozen=True)
class RpcAddress:
    """A TVM RPC server (`host:port`), or a tracker (`host:port` and the device's key)."""

    host: str
    port: int
    key: str | None = None  # set: the address is a tracker's

    @classmethod
    def parse(cls, text: str, key: str | None = None) -> "RpcAddress":
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise RunnerError(f"an RPC address is HOST:PORT with a port from 1 to 65535, not {text!r}")
        return cls(host, int(port), key)

    def check_reachable(self, timeout_s: float = 5.0) -> None:
        """Refuse, in one line, an address where nothing accepts connections (before compiling)."""
        what = "tracker" if self.key else "RPC server"
        try:
            socket.create_connection((self.host, self.port), timeout=timeout_s).close()
        except OSError as e:
            raise RunnerError(f"no TVM {what} at {self.host}:{self.port}: {e.strerror or e}") from None

    def __str__(self) -> str:
        return f"{self.host}:{self.port}" + (f" (tracker, key {self.key})" if self.key else "")


def connect(address: RpcAddress, timeout_s: float = 60.0):
    """An RPC session to the device, or a one-line error saying which address failed."""
    import_tvm()
    from tvm import rpc

    try:
        if address.key:
            tracker = rpc.connect_tracker(address.host, address.port)
            return tracker.request(address.key, priority=1, session_timeout=0)
        return rpc.connect(address.host, address.port, session_timeout=0)
    except Exception as e:  # noqa: BLE001 - TVM raises RuntimeError/TVMError/OSError alike
        reason = str(e).strip().splitlines()
        what = "tracker" if address.key else "RPC server"
        raise RunnerError(
            f"cannot reach the TVM {what} at {address.host}:{address.port}"
            + (f": {reason[-1][:160]}" if reason else "")
        ) from None


class RemoteVm:
    """The Relax VM on a device behind RPC: the library is uploaded, loaded and run there."""

    def __init__(self, session, library: Path):
        tvm = import_tvm()
        from tvm import relax

        self.tvm = tvm
        self.session = session
        session.upload(str(library))
        self.device = session.cpu()
        self.vm = relax.VirtualMachine(session.load_module(library.name), self.device)

    def tensor(self, array: np.ndarray):
        return self.tvm.runtime.tensor(array, device=self.device)

    def __call__(self, tensor):
        return self.vm["main"](tensor)

    def time_calls(self, tensor, calls: int) -> list[float]:
        """`calls` timings (seconds) measured on the device by the VM's time evaluator."""
        self.vm.set_input("main", tensor)
        evaluator = self.vm.time_evaluator("invoke_stateful", self.device, number=1, repeat=calls)
        return [float(t) for t in evaluator("main").results]

    def download(self, path: str) -> str:
        """A text file of the device ('' when it cannot be read), for its fingerprint."""
        try:
            return bytes(self.session.download(path)).decode(errors="replace")
        except Exception:  # noqa: BLE001 - a missing file is simply not described
            return ""

    def remote_function(self, name: str):
        try:
            return self.session.get_function(name)
        except Exception:  # noqa: BLE001 - a runtime-only device lacks compiler functions
            return None


def to_numpy(output) -> np.ndarray:
    if hasattr(output, "numpy"):
        return output.numpy()
    return output[0].numpy()  # a tuple of one tensor
