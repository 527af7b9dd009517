"""ONNX Runtime: CPUExecutionProvider (CUDAExecutionProvider on `gpu`), every graph
optimisation, intra-op threads = the platform's threads, one inter-op thread.

fp32 runs the export; int8 runs its QDQ twin quantized for ONNX Runtime (exporters/quantize.py),
which ORT fuses into QGemm, QLinearConv and QLinearMatMul kernels."""

from __future__ import annotations

import collections
import json
import os
import re
import statistics
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from levit_bench.runners.artifacts import Artifact
from levit_bench.runners.base import Runner, RunnerError, RuntimeDescription, check_precision, quantization_details
from levit_bench.runners.measure import Protocol, measure
from levit_bench.runners.profiling import Kernel, Profile

KERNEL_SUFFIX = "_kernel_time"  # ORT's name for a node's compute event in its trace


def _import():
    try:
        import onnxruntime
    except ImportError:
        raise RunnerError("onnxruntime is not installed (pip install 'levit-bench[onnx]')") from None
    return onnxruntime


def thread_count() -> int:
    """This process's threads: ORT reports no thread count of its own, so the threads a session
    starts (its intra-op pool beside the calling thread) are counted."""
    return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else threading.active_count()


NCHWC_SUFFIX = "_nchwc"


# Names ORT's quantization tools give the tensors around a quantized node, after the fp32 one
QDQ_SUFFIXES = ("_QuantizeLinear_Output", "_DequantizeLinear_Output", "_QuantizeLinear", "_DequantizeLinear",
                "_quantized")
TOKEN_SUFFIX = re.compile(r"_token_\d+$")  # ORT's name for a node its QDQ fusion made from another


def _replaced(name: str) -> tuple[str, ...]:
    """The graph tensor a node ORT made anew stands for: its NCHWc transformer names a converted
    Conv after the tensor it computes (`conv2d_5_nchwc` for `conv2d_5`) and writes a new one."""
    return (name[: -len(NCHWC_SUFFIX)],) if name.endswith(NCHWC_SUFFIX) else ()


def _fp32_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """`names`, and for an int8 graph's tensor the fp32 tensor it quantizes (`x_QuantizeLinear_Output`
    stands for `x`), so that an int8 kernel maps to the component of the fp32 export's node."""
    found = [name[: -len(suffix)] for name in names for suffix in QDQ_SUFFIXES if name.endswith(suffix)]
    return tuple(dict.fromkeys([*names, *found]))


def trace_profile(trace: list[dict], tensors: dict[str, tuple[tuple[str, ...], tuple[str, ...]]],
                  calls: int) -> Profile:
    """The last `calls` runs of an ORT trace (the earlier ones were the warm-up), per node;
    `tensors`: each node's inputs and outputs in ORT's optimised graph."""
    runs = sorted((e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])[-calls:]
    start = runs[0]["ts"]
    microseconds: dict[str, float] = collections.defaultdict(float)
    ops = {}
    for event in trace:
        if event.get("cat") == "Node" and event["name"].endswith(KERNEL_SUFFIX) and event["ts"] >= start:
            name = event["name"][: -len(KERNEL_SUFFIX)]
            microseconds[name] += event["dur"]
            ops[name] = event.get("args", {}).get("op_name", "")
    kernels = []
    for name, us in microseconds.items():
        inputs, outputs = tensors.get(name, ((), ()))
        node = name.split("/")[0]
        kernels.append(Kernel(name, ops[name], us / len(runs) / 1e3, outputs=_fp32_names(outputs + _replaced(name)),
                              inputs=_fp32_names(inputs), covers=tuple(dict.fromkeys([node, TOKEN_SUFFIX.sub("", node)]))))
    return Profile("onnxruntime", len(runs), statistics.fmean(r["dur"] for r in runs) / 1e3, kernels,
                   {"profiler": "SessionOptions.enable_profiling (JSON trace)"})


class OnnxRuntimeRunner(Runner):
    runtime = "onnxruntime"
    multi_stream = True  # a session per stream, each with its share of the threads

    def __init__(self, platform, options):
        super().__init__(platform, options)
        if self.precision not in ("fp32", "int8"):
            raise RunnerError(f"onnxruntime runs fp32 or int8, not {self.precision}")
        self.ort = _import()
        self.provider = "CUDAExecutionProvider" if platform.device == "cuda" else "CPUExecutionProvider"
        if self.provider not in self.ort.get_available_providers():
            raise RunnerError(
                f"onnxruntime here has no {self.provider} (install onnxruntime-gpu for the gpu platform)"
            )

    def _options(self):
        ort = self.ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.stream_threads or 0  # 0: ORT's default, every core
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return options

    def load(self, artifact: Artifact, batch: int) -> None:
        check_precision(self.runtime, self.precision, artifact)
        self.artifact = artifact
        before = thread_count()
        self.sessions = [self.ort.InferenceSession(str(artifact.onnx_path), self._options(), providers=[self.provider])
                         for _ in range(self.streams)]
        self.started_threads = thread_count() - before  # their intra-op pools, the calling threads aside
        self.session = self.sessions[0]
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, inputs: np.ndarray) -> Any:
        return self.session.run(None, {self.input_name: inputs})[0]

    def stream_calls(self) -> list:
        """One session per stream: concurrent runs of one session would share its intra-op pool."""
        return [lambda inputs, session=session: session.run(None, {self.input_name: inputs})[0]
                for session in self.sessions]

    def profile(self, inputs: np.ndarray, protocol: Protocol) -> Profile:
        """ORT's own profiler (a JSON trace of every node's kernel) on a second session, built the
        same way; its optimised graph is saved too, so that a fused node's outputs are known."""
        import onnx

        with tempfile.TemporaryDirectory() as tmp:
            options = self._options()
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(tmp) / "ort")
            options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
            options.log_severity_level = 3  # its warning that a saved NCHWc graph is host-specific
            session = self.ort.InferenceSession(str(self.artifact.onnx_path), options, providers=[self.provider])
            feed = {self.input_name: inputs}
            timings = measure(lambda: session.run(None, feed), protocol)
            trace = json.loads(Path(session.end_profiling()).read_text())
            optimized = onnx.load(options.optimized_model_filepath, load_external_data=False)
        tensors = {node.name: (tuple(node.input), tuple(node.output)) for node in optimized.graph.node}
        return trace_profile(trace, tensors, len(timings.samples_s))

    def describe(self) -> RuntimeDescription:
        return RuntimeDescription(
            runtime=self.runtime, version=self.ort.__version__, device=self.provider,
            precision=self.precision, threads=self.streams + self.started_threads,
            details={"graph_optimization_level": "ORT_ENABLE_ALL", "inter_op_threads": 1,
                     "streams": f"{self.streams} session{'s' * (self.streams > 1)}, one per stream",
                     **quantization_details(self.artifact)},
        )
