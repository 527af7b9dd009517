"""What one core of this host can do, measured on that core: the ceiling speeds are read against.

- FMA peak: a loop of independent vector fused multiply-adds compiled by the host's C
  compiler for this CPU (-march=native; 512-bit vectors where the CPU has AVX-512), so the
  figure is the core's, not a GEMM library's.
- GEMM: a 1024^3 fp32 matrix product in each installed runtime's own kernels, on one thread
  (ONNX Runtime's MLAS, OpenVINO's oneDNN, and torch's BLAS), plus OpenVINO in bf16 and ONNX
  Runtime in int8 (MatMulInteger) where the CPU has instructions for them.
- Memory bandwidth: a 256 MiB copy (bytes read + written per second).

Each figure is the best of a few repetitions on one exclusively held, pinned core. The result
is cached per host fingerprint in the cache directory, so it is measured once per host.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from levit_bench import environment
from levit_bench.errors import LevitBenchError
from levit_bench.platforms import get_platform
from levit_bench.runners import core_locks
from levit_bench.workdir import cache_dir, write_atomic

GEMM_SIZE = 1024
COPY_BYTES = 256 * 2**20
REPEATS = 5
ACCUMULATORS = 12  # independent FMA chains: more than latency x units on any current core
_FMA_SOURCE = """
typedef float vec __attribute__((vector_size(%(bytes)d)));
double fma_loop(long iterations, float scale, float add) {
    vec acc[%(accumulators)d];
    for (int i = 0; i < %(accumulators)d; i++) acc[i] = (vec){0} + 1e-3f * (i + 1);
    vec m = (vec){0} + scale, a = (vec){0} + add;
    for (long n = 0; n < iterations; n++) {
#pragma GCC unroll %(accumulators)d
        for (int i = 0; i < %(accumulators)d; i++) acc[i] = acc[i] * m + a;
    }
    double sum = 0;
    for (int i = 0; i < %(accumulators)d; i++)
        for (int j = 0; j < %(bytes)d / 4; j++) sum += acc[i][j];
    return sum;
}
"""


def _path(host: environment.HostInfo) -> Path:
    return cache_dir() / "calibration" / f"{host.fingerprint}.json"


def cached(host: environment.HostInfo | None = None) -> dict | None:
    """This host's calibration if it was measured before (None: never)."""
    try:
        return json.loads(_path(host or environment.host_info()).read_text())
    except (OSError, ValueError):
        return None


def fma_gflops(host: environment.HostInfo, cores: int) -> float | None:
    """The calibrated FMA peak of `cores` cores of `host` (None: never calibrated, or no compiler)."""
    per_core = (cached(host) or {}).get("fma_gflops")
    return per_core * cores if per_core else None


def _best_rate(work: float, call: Callable[[], object], min_s: float = 0.15) -> float:
    """`work` units per second of `call`, the best of REPEATS timings of at least `min_s` each."""
    call()  # warm up
    best = 0.0
    for _ in range(REPEATS):
        calls, started = 0, time.perf_counter()
        while True:
            call()
            calls += 1
            elapsed = time.perf_counter() - started
            if elapsed >= min_s:
                break
        best = max(best, work * calls / elapsed)
    return best


def _vector_bytes(host: environment.HostInfo) -> int:
    isa = set(host.isa)
    return 64 if "avx512f" in isa else 32 if "avx2" in isa else 16


def fma_peak(host: environment.HostInfo) -> dict:
    """GFLOP/s of the compiled FMA loop (None with the reason when there is no C compiler)."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        return {"gflops": None, "reason": "no C compiler (cc, gcc or clang) on this host"}
    vector_bytes = _vector_bytes(host)
    flags = ["-O2", "-march=native", "-ffp-contract=fast", "-shared", "-fPIC"]
    with tempfile.TemporaryDirectory() as tmp:
        source, library = Path(tmp) / "fma.c", Path(tmp) / "fma.so"
        source.write_text(_FMA_SOURCE % {"bytes": vector_bytes, "accumulators": ACCUMULATORS})
        built = subprocess.run([compiler, *flags, "-o", str(library), str(source)], capture_output=True, text=True)
        if built.returncode != 0:
            return {"gflops": None, "reason": f"{compiler} failed: {built.stderr.strip()[:200]}"}
        kernel = ctypes.CDLL(str(library)).fma_loop
        kernel.restype, kernel.argtypes = ctypes.c_double, [ctypes.c_long, ctypes.c_float, ctypes.c_float]
        iterations = 2_000_000
        flops = iterations * ACCUMULATORS * (vector_bytes // 4) * 2
        gflops = _best_rate(flops / 1e9, lambda: kernel(iterations, 0.999999, 1e-7))
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout.splitlines()
    return {"gflops": round(gflops, 1), "vector_bits": vector_bytes * 8, "accumulators": ACCUMULATORS,
            "compiler": version[0] if version else compiler, "flags": flags[:3]}


def _matmul_onnx(directory: Path, int8: bool = False) -> Path:
    """A GEMM as a one-node ONNX graph: fp32 MatMul, or MatMulInteger (uint8 x int8 -> int32)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if int8:
        weight = rng.integers(-127, 128, (GEMM_SIZE, GEMM_SIZE), dtype=np.int8)
        node, inputs, output = helper.make_node("MatMulInteger", ["a", "b"], ["c"]), TensorProto.UINT8, TensorProto.INT32
    else:
        weight = rng.standard_normal((GEMM_SIZE, GEMM_SIZE), dtype=np.float32)
        node, inputs, output = helper.make_node("MatMul", ["a", "b"], ["c"]), TensorProto.FLOAT, TensorProto.FLOAT
    graph = helper.make_graph(
        [node], "gemm", [helper.make_tensor_value_info("a", inputs, [GEMM_SIZE, GEMM_SIZE])],
        [helper.make_tensor_value_info("c", output, [GEMM_SIZE, GEMM_SIZE])], [numpy_helper.from_array(weight, "b")])
    path = directory / ("gemm-int8.onnx" if int8 else "gemm.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def gemm_peaks(host: environment.HostInfo) -> dict[str, float]:
    """GFLOP/s (GOP/s for int8) of one fp32 matrix product per installed runtime, plus bf16
    (OpenVINO) and int8 (ONNX Runtime's MatMulInteger) where the CPU has instructions for them."""
    import torch

    work = 2 * GEMM_SIZE**3 / 1e9
    a = np.random.default_rng(1).standard_normal((GEMM_SIZE, GEMM_SIZE), dtype=np.float32)
    found: dict[str, float] = {}
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ta, tb = torch.from_numpy(a), torch.from_numpy(a.copy())
        found["torch"] = round(_best_rate(work, lambda: ta @ tb), 1)
    finally:
        torch.set_num_threads(saved)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            model = _matmul_onnx(Path(tmp))
        except ImportError:
            return found
        try:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
            session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
            found["onnxruntime"] = round(_best_rate(work, lambda: session.run(None, {"a": a})), 1)
            if {"avx512_vnni", "avx_vnni", "asimddp"} & set(host.isa):  # int8 dot-product instructions
                quantized = ort.InferenceSession(str(_matmul_onnx(Path(tmp), int8=True)), options,
                                                 providers=["CPUExecutionProvider"])
                a8 = np.random.default_rng(2).integers(0, 256, a.shape, dtype=np.uint8)
                found["onnxruntime int8"] = round(_best_rate(work, lambda: quantized.run(None, {"a": a8})), 1)
        except ImportError:
            pass
        try:
            import openvino as ov

            core = ov.Core()
            hints = {"openvino": "f32"}
            if "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
                hints["openvino bf16"] = "bf16"
            for label, hint in hints.items():
                compiled = core.compile_model(str(model), "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                                  "INFERENCE_NUM_THREADS": 1})
                request = compiled.create_infer_request()
                found[label] = round(_best_rate(work, lambda: request.infer({0: a})), 1)
        except ImportError:
            pass
    return found


def memory_bandwidth() -> float:
    """GB/s of a large copy on one core (bytes read plus bytes written)."""
    source = np.ones(COPY_BYTES // 4, dtype=np.float32)
    target = np.empty_like(source)
    return round(_best_rate(2 * COPY_BYTES / 1e9, lambda: np.copyto(target, source)), 1)


def calibrate(on_step: Callable[[str], None] = lambda step: None, force: bool = False) -> dict:
    """This host's peaks, from the cache unless `force` or never measured; measured on one held core."""
    host = environment.host_info()
    if not force and (found := cached(host)) is not None:
        return found
    with core_locks.pinned(get_platform("arm" if host.architecture in ("aarch64", "arm64") else "xeon")) as cores:
        on_step("FMA peak")
        fma = fma_peak(host)
        on_step("GEMM in each runtime")
        gemm = gemm_peaks(host)
        on_step("memory bandwidth")
        memory = memory_bandwidth()
    result = {
        "host": host.fingerprint, "cpu_model": host.cpu_model,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "threads": 1, "core": cores,
        "fma_gflops": fma["gflops"], "fma": fma, "gemm_gflops": gemm, "memory_gbps": memory,
    }
    try:
        _path(host).parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LevitBenchError(f"cannot write the calibration to {_path(host).parent}: {e.strerror or e}") from None
    write_atomic(_path(host), (json.dumps(result, indent=2) + "\n").encode())
    return result
