"""ONNX Runtime: CPUExecutionProvider (CUDAExecutionProvider on `gpu`), every graph
optimisation, intra-op threads = the platform's threads, one inter-op thread."""

from __future__ import annotations

from typing import Any

import numpy as np

from levit_bench.runners.artifacts import Artifact
from levit_bench.runners.base import Runner, RunnerError, RuntimeDescription


def _import():
    try:
        import onnxruntime
    except ImportError:
        raise RunnerError("onnxruntime is not installed (pip install 'levit-bench[onnx]')") from None
    return onnxruntime


class OnnxRuntimeRunner(Runner):
    runtime = "onnxruntime"

    def __init__(self, platform, options):
        super().__init__(platform, options)
        if self.precision != "fp32":
            raise RunnerError(f"onnxruntime runs the exported fp32 graph; --precision {self.precision} is not available")
        self.ort = _import()
        self.provider = "CUDAExecutionProvider" if platform.device == "cuda" else "CPUExecutionProvider"
        if self.provider not in self.ort.get_available_providers():
            raise RunnerError(
                f"onnxruntime here has no {self.provider} (install onnxruntime-gpu for the gpu platform)"
            )

    def load(self, artifact: Artifact, batch: int) -> None:
        ort = self.ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.platform.threads or 0  # 0: ORT's default, every core
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(artifact.onnx_path), options, providers=[self.provider])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, inputs: np.ndarray) -> Any:
        return self.session.run(None, {self.input_name: inputs})[0]

    def describe(self) -> RuntimeDescription:
        return RuntimeDescription(
            runtime=self.runtime, version=self.ort.__version__, device=self.provider,
            precision=self.precision, threads=self.platform.threads,
            details={"graph_optimization_level": "ORT_ENABLE_ALL", "inter_op_threads": 1},
        )
