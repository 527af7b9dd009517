"""OpenVINO on the CPU device, LATENCY hint, INFERENCE_NUM_THREADS = the platform's threads.

Precision is explicit: OpenVINO picks bf16 by itself on CPUs that have it, so f32 is asked
for unless `--precision bf16|fp16`, a precision the CPU lacks is refused (OpenVINO would
quietly run another), and the precision the compiled model reports is what gets recorded.
int8 runs the artifact NNCF quantized for OpenVINO (exporters/quantize.py), f32 between its
int8 layers; it is recorded as int8 only when the compiled model holds int8 compute kernels.
"""

from __future__ import annotations

import collections
import functools
import statistics
import time
from importlib import metadata
from typing import Any

import numpy as np

from levit_bench.runners.artifacts import Artifact
from levit_bench.runners.base import Runner, RunnerError, RuntimeDescription, check_precision, quantization_details
from levit_bench.runners.measure import Protocol, measure_timed
from levit_bench.runners.profiling import Kernel, Profile

_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}  # int8: f32 between the int8 layers
_CAPABILITY = {"fp32": "FP32", "bf16": "BF16", "fp16": "FP16", "int8": "INT8"}
_COMPUTE = ("FullyConnected", "Convolution", "MatMul")
_RECORDED = {"float32": "fp32", "f32": "fp32", "bfloat16": "bf16", "bf16": "bf16", "float16": "fp16", "f16": "fp16"}


def _import():
    try:
        import openvino
    except ImportError:
        raise RunnerError("openvino is not installed (pip install 'levit-bench[openvino]')") from None
    return openvino


def _infer(request, inputs: Any) -> Any:
    """One inference on `request` of a tensor from `to_input`; the output is a view of the request's
    buffer, valid until its next call."""
    request.set_input_tensor(inputs)
    request.infer()
    return request.get_output_tensor(0).data


class OpenVinoRunner(Runner):
    runtime = "openvino"
    multi_stream = True  # NUM_STREAMS, an infer request per stream

    def __init__(self, platform, options):
        super().__init__(platform, options)
        if platform.device != "cpu":
            raise RunnerError("openvino is measured on the CPU platforms (xeon, arm); its GPU plugin is not used")
        if self.precision not in _HINTS:
            raise RunnerError(f"openvino precisions are {', '.join(_HINTS)}, not {self.precision}")
        self.ov = _import()
        self.core = self.ov.Core()
        capabilities = self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if _CAPABILITY[self.precision] not in capabilities:
            raise RunnerError(
                f"this CPU cannot run openvino in {self.precision} (its capabilities: "
                f"{', '.join(capabilities)}); OpenVINO would silently use another precision"
            )

    def _config(self) -> dict:
        config = {
            "INFERENCE_PRECISION_HINT": _HINTS[self.precision],
            "PERFORMANCE_HINT": "LATENCY",
        }
        if self.platform.threads:
            config["INFERENCE_NUM_THREADS"] = self.platform.threads
            config["ENABLE_CPU_PINNING"] = True  # its threads on the held cores, one each
            config["NUM_STREAMS"] = self.streams  # each stream on threads / streams of them
        return config

    def load(self, artifact: Artifact, batch: int) -> None:
        check_precision(self.runtime, self.precision, artifact)
        self.artifact = artifact
        self.compiled = self.core.compile_model(str(artifact.onnx_path), "CPU", self._config())
        confirmed = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        confirmed = _RECORDED.get(confirmed.split("'")[1] if "'" in confirmed else confirmed, confirmed)
        self.kernels = self._compute_kernels()
        self.threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        if self.precision == "int8" and confirmed == "fp32":  # int8 layers, f32 between them
            if not self.kernels.get("int8"):
                raise RunnerError("openvino compiled no int8 kernel from the int8 artifact; it would run fp32")
            confirmed = "int8"
        self.confirmed_precision = confirmed
        if self.confirmed_precision != self.precision:
            raise RunnerError(
                f"openvino compiled the model in {self.confirmed_precision}, not the {self.precision} asked for"
            )
        self.compiled_streams = int(self.compiled.get_property("NUM_STREAMS"))
        if self.platform.threads and self.compiled_streams != self.streams:
            raise RunnerError(f"openvino compiled {self.compiled_streams} streams, not the {self.streams} asked for")
        self.requests = [self.compiled.create_infer_request() for _ in range(self.streams)]
        self.request = self.requests[0]

    def _compute_kernels(self) -> dict[str, int]:
        """How many compiled GEMM/convolution kernels run in each precision ({"int8": 71, "f32": 2})."""
        counts: dict[str, int] = collections.Counter()
        for op in self.compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            if "layerType" in info and info["layerType"].astype(str) in _COMPUTE:
                precision = info["runtimePrecision"].astype(str)
                counts["int8" if precision in ("u8", "i8") else precision] += 1
        return dict(counts)

    def to_input(self, images: np.ndarray) -> Any:
        """The batch as a tensor over the array's own memory: `infer` given an array copies it into
        the request's input (9.6 MB per call at batch 16) and copies its outputs out again."""
        return self.ov.Tensor(np.ascontiguousarray(images, np.float32), shared_memory=True)

    def __call__(self, inputs: Any) -> Any:
        return _infer(self.request, inputs)

    def stream_calls(self) -> list:
        """An infer request per stream (its own buffers), each run from a thread of its own: the
        compiled model's streams take them at once."""
        return [functools.partial(_infer, request) for request in self.requests]

    def to_numpy(self, outputs: Any) -> np.ndarray:
        return np.array(outputs, copy=True)  # the request reuses its output buffer

    def profile(self, inputs: np.ndarray, protocol: Protocol) -> Profile:
        """OpenVINO's PERF_COUNT on a second compilation, built the same way: each executed
        node's real time, read after every measured call (it holds the last call only) and
        summed; each node names the original nodes it fused (rt_info originalLayersNames)."""
        compiled = self.core.compile_model(str(self.artifact.onnx_path), "CPU", {**self._config(), "PERF_COUNT": True})
        request = compiled.create_infer_request()
        original = {}  # executed node -> the original nodes it runs ("Gemm_3/WithoutBiases" is Gemm_3's)
        for op in compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            names = info["originalLayersNames"].astype(str).split(",") if "originalLayersNames" in info else []
            original[op.get_friendly_name()] = tuple(dict.fromkeys(n.split("/")[0] for n in names if n))
        microseconds: dict[str, float] = collections.defaultdict(float)
        kinds: dict[str, str] = {}

        def timed_call() -> float:
            started = time.perf_counter()
            _infer(request, inputs)
            return time.perf_counter() - started

        def collect() -> None:
            for info in request.get_profiling_info():
                microseconds[info.node_name] += info.real_time.total_seconds() * 1e6
                kinds[info.node_name] = f"{info.node_type}/{info.exec_type}"

        timings = measure_timed(timed_call, protocol, after_sample=collect)
        calls = len(timings.samples_s)
        # an original name is an ONNX node's name, or for some ops the tensor it wrote: tried as both
        kernels = [Kernel(name, kinds[name], us / calls / 1e3, outputs=original.get(name, ()),
                          covers=original.get(name, ()))
                   for name, us in microseconds.items() if us > 0]
        return Profile("openvino", calls, statistics.fmean(timings.samples_s) * 1e3, kernels,
                       {"profiler": "PERF_COUNT + InferRequest.get_profiling_info()"})

    def describe(self) -> RuntimeDescription:
        return RuntimeDescription(
            runtime=self.runtime, version=metadata.version("openvino"), device="CPU",
            precision=self.confirmed_precision, threads=self.threads,
            details={
                "INFERENCE_PRECISION_HINT": _HINTS[self.precision],
                "PERFORMANCE_HINT": "LATENCY",
                "NUM_STREAMS": self.compiled_streams,
                "cpu": self.core.get_property("CPU", "FULL_DEVICE_NAME"),
                "build": self.ov.get_version(),
                "compute_kernels": self.kernels,
                **quantization_details(self.artifact),
            },
        )
