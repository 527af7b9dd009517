"""ExecuTorch with the XNNPACK delegate: the `.pte` lowered once per model, batch and precision
(`exporters/pte.py`, kept keyed in the work directory), run by `executorch.runtime.Runtime`.

XNNPACK computes on ExecuTorch's one process-wide thread pool, which starts with a thread per
CPU the process sees: the runner sizes it to the platform's threads before loading, and gives
the old size back on close. One pool means one stream: two requests at once would share it.

On `--platform arm` with `--rpc emulator` the same `.pte` runs on ExecuTorch's aarch64 runtime
under QEMU (`devices/arm_executorch.py`): outputs checked through the gate, the record
`emulated`, no timing kept.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from levit_bench.exporters import fuse, keyed
from levit_bench.exporters.quantize import DEFAULT_CALIB_SIZE
from levit_bench.models import levit_fused
from levit_bench.registry import family, get_spec
from levit_bench.runners.artifacts import Artifact
from levit_bench import environment
from levit_bench.console import native_stderr_quiet
from levit_bench.devices import arm_emulator, arm_executorch
from levit_bench.runners.base import Runner, RunnerError, RunnerOptions, RuntimeDescription
from levit_bench.runners.measure import Protocol, measure
from levit_bench.runners.profiling import Profile
from levit_bench.train.calibration import calibration_images

PTE_FORMAT = 1  # what a sidecar must say for its .pte to be reused
CALIBRATION_SEED = 0


def missing() -> str:
    return "executorch is not installed: pip install 'levit-bench[executorch]' (executorch==1.5.1)"


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _portable_lib():
    try:
        with native_stderr_quiet():
            from executorch.extension.pybindings import portable_lib

            portable_lib._threadpool_get_thread_count()  # the pool starts, and logs, on first use
    except ImportError:
        raise RunnerError(missing()) from None
    return portable_lib


def ensure_pte(artifact: Artifact, batch: int, precision: str, workdir) -> keyed.Built:
    """The `.pte` of `artifact`'s model for `batch` and `precision`, lowered now if the work
    directory has none made from these very weights by this code."""
    import executorch.version
    from levit_bench.exporters import pte

    calibration = None
    if precision == "int8":
        calibration = {"kind": "synthetic", "count": DEFAULT_CALIB_SIZE, "seed": CALIBRATION_SEED}
    wanted = {
        "format": PTE_FORMAT, "model": artifact.model, "from_sha256": artifact.sha256, "weights": artifact.weights,
        "batch": batch, "precision": precision, "input_shape": [batch, 3, artifact.resolution, artifact.resolution],
        "executorch_version": executorch.version.__version__, "torch_version": torch.__version__,
        "calibration": calibration, "code_sha256": keyed.code_fingerprint(pte, fuse, levit_fused),
    }

    def lower(out) -> dict:
        images = None
        if calibration is not None:
            images = calibration_images(get_spec(artifact.model), None, DEFAULT_CALIB_SIZE, batch,
                                        CALIBRATION_SEED).images
        with native_stderr_quiet():
            return pte.lower_to_pte(artifact.reference_model, batch, artifact.resolution, precision, out, images)

    suffix = ".xnnpack.pte" if precision == "fp32" else f".xnnpack-{precision}.pte"
    return keyed.build_keyed(workdir, "executorch", artifact.model, artifact.model + suffix, wanted, lower)


@dataclass(frozen=True)
class ExecuTorchOptions(RunnerOptions):
    rpc: str | None = None  # "emulator": the arm platform's .pte on the emulated board (QEMU)


def _check_board_version() -> None:
    """The board's runtime must read what this host's executorch writes: the same release."""
    import executorch.version

    here = executorch.version.__version__.split("+")[0]  # 1.5.1+cpu: the release, less the build tag
    board = arm_emulator.WHEELS["executorch"]
    if here != board:
        raise RunnerError(f"the emulated board runs executorch {board}, and this host would build the .pte with "
                          f"{here}: pip install executorch=={board}")


class ExecuTorchRunner(Runner):
    runtime = "executorch"
    Options = ExecuTorchOptions
    quantizes_onnx = False  # its int8 is quantized from the PyTorch model (PT2E), not from the ONNX file
    needs_pytorch_model = True

    def __init__(self, platform, options: ExecuTorchOptions):
        super().__init__(platform, options)
        if platform.device != "cpu":
            raise RunnerError(f"executorch runs on the CPU platforms, not {platform.name}")
        if options.rpc not in (None, "emulator"):
            raise RunnerError("executorch has no RPC server: --rpc emulator runs its aarch64 runtime under QEMU "
                              "here; on an ARM board, run levit-bench on the board")
        if options.rpc and platform.base != "arm":
            raise RunnerError(f"--rpc emulator runs executorch's aarch64 runtime: use it with --platform arm, "
                              f"not {platform.name}")
        self.emulated = options.rpc == "emulator"
        self.lib = _portable_lib()
        if self.emulated:
            _check_board_version()
        self._saved_threads = self.lib._threadpool_get_thread_count()

    @classmethod
    def runs_elsewhere(cls, options: ExecuTorchOptions) -> bool:
        return options.rpc is not None

    def load(self, artifact: Artifact, batch: int) -> None:
        with native_stderr_quiet():
            from executorch.runtime import Runtime

        if artifact.batch not in (batch, None):
            raise RunnerError(f"the artifact has batch {artifact.batch}, the run asks for {batch}")
        # the lowering (and int8's calibration) computes with torch: on the held cores' threads, since
        # an OpenMP team larger than the cores it is pinned to spins at every barrier (levit_128s's
        # calibration at batch 1: over 12 minutes on 2 threads pinned to 1 core, 8 s on 1)
        with _torch_threads(self.stream_threads or torch.get_num_threads()):
            self.built = ensure_pte(artifact, batch, self.precision, self.options.workdir)
        self.model = artifact.model
        if self.emulated:
            self._load_emulated()
            return
        threads = self.stream_threads or os.cpu_count()
        if self.lib._threadpool_get_thread_count() != threads:
            with native_stderr_quiet():
                self.lib._unsafe_reset_threadpool(threads)
        t0 = time.perf_counter()
        with native_stderr_quiet():
            self.method = Runtime.get().load_program(self.built.path).load_method("forward")
        self.package_load_s = time.perf_counter() - t0
        self.threads = self.lib._threadpool_get_thread_count()

    def _load_emulated(self) -> None:
        """The arm64 root with ExecuTorch's aarch64 runtime, and the runner cross-compiled for it."""
        t0 = time.perf_counter()
        self.board = arm_executorch.ensure_runner()
        self.package_load_s = time.perf_counter() - t0
        self.threads = self.platform.threads or 1
        self.board_said: dict | None = None

    def to_input(self, images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(images, np.float32))

    def __call__(self, inputs: torch.Tensor) -> Any:
        if self.emulated:
            outputs, self.board_said = arm_executorch.run_pte(self.built.path, inputs.numpy(), self.threads,
                                                              *self.board)
            return torch.from_numpy(outputs)
        return self.method.execute([inputs])[0]

    def to_numpy(self, outputs: torch.Tensor) -> np.ndarray:
        return outputs.numpy()

    def profile(self, inputs: torch.Tensor, protocol: Protocol) -> Profile:
        """ETDump over the protocol's calls of the same `.pte` loaded again with event tracing on
        (`runners/executorch_profile.py`); the first call, a warm-up, is left out."""
        from levit_bench.runners.executorch_profile import profile_module

        self.measure(inputs, replace(protocol, min_calls=0, min_s=0.0))  # the warm-up, unprofiled
        with native_stderr_quiet():
            module = self.lib._load_for_executorch(str(self.built.path), enable_etdump=True, debug_buffer_size=0)
        rules = family(get_spec(self.model).family).components

        def measure_calls(call) -> list[float]:
            return measure(call, replace(protocol, warmup_calls=1, warmup_s=0.0)).samples_s

        with native_stderr_quiet():  # the Inspector's own notices
            return profile_module(module, [inputs], measure_calls, self.built.sidecar["delegation"]["nodes"], rules)

    def close(self) -> None:
        if self.lib._threadpool_get_thread_count() != self._saved_threads:
            with native_stderr_quiet():
                self.lib._unsafe_reset_threadpool(self._saved_threads)

    def device_host(self) -> environment.HostInfo | None:
        """The emulated board, as the runner read its CPU (None: this host)."""
        if not self.emulated or self.board_said is None:
            return None
        root = self.board[0]
        return environment.host_info_from_texts(
            architecture="aarch64", cpuinfo=arm_executorch.board_cpuinfo(self.board_said),
            meminfo=arm_executorch.host_memory(), os_release=arm_executorch.os_release(root),
            fallback_cpu=f"aarch64 {arm_executorch.CPU} (QEMU emulation)")

    def describe(self) -> RuntimeDescription:
        import executorch.version

        sidecar = self.built.sidecar
        threads = self.board_said["threads"] if self.emulated and self.board_said else self.threads
        device = f"QEMU {arm_executorch.CPU} (XNNPACK, emulated)" if self.emulated else "cpu (XNNPACK)"
        return RuntimeDescription(
            runtime=self.runtime, version=executorch.version.__version__, device=device,
            precision=self.precision, threads=threads, mode=self.mode,
            details={"pte": str(self.built.path), "pte_sha256": self.built.sha256, "built_now": self.built.built_now,
                     "build_s": sidecar["build_s"],
                     # emulated: the seconds the board took to be ready (its root and runner), not a load
                     ("board_ready_s" if self.emulated else "pte_load_s"): round(self.package_load_s, 4),
                     "delegation": {k: v for k, v in sidecar["delegation"].items() if k != "nodes"},
                     "calibration": sidecar["calibration"],
                     **({"emulated_cpu": arm_executorch.CPU} if self.emulated else {})},
        )

