"""OpenVINO on the CPU device, LATENCY hint, INFERENCE_NUM_THREADS = the platform's threads.

Precision is explicit: OpenVINO picks bf16 by itself on CPUs that have it, so f32 is asked
for unless `--precision bf16|fp16`, a precision the CPU lacks is refused (OpenVINO would
quietly run another), and the precision the compiled model reports is what gets recorded.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import numpy as np

from levit_bench.runners.artifacts import Artifact
from levit_bench.runners.base import Runner, RunnerError, RuntimeDescription

_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
_CAPABILITY = {"fp32": "FP32", "bf16": "BF16", "fp16": "FP16"}
_RECORDED = {"float32": "fp32", "f32": "fp32", "bfloat16": "bf16", "bf16": "bf16", "float16": "fp16", "f16": "fp16"}


def _import():
    try:
        import openvino
    except ImportError:
        raise RunnerError("openvino is not installed (pip install 'levit-bench[openvino]')") from None
    return openvino


class OpenVinoRunner(Runner):
    runtime = "openvino"

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

    def load(self, artifact: Artifact, batch: int) -> None:
        config = {
            "INFERENCE_PRECISION_HINT": _HINTS[self.precision],
            "PERFORMANCE_HINT": "LATENCY",
        }
        if self.platform.threads:
            config["INFERENCE_NUM_THREADS"] = self.platform.threads
        self.compiled = self.core.compile_model(str(artifact.onnx_path), "CPU", config)
        confirmed = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        self.confirmed_precision = _RECORDED.get(confirmed.split("'")[1] if "'" in confirmed else confirmed, confirmed)
        if self.confirmed_precision != self.precision:
            raise RunnerError(
                f"openvino compiled the model in {self.confirmed_precision}, not the {self.precision} asked for"
            )
        self.request = self.compiled.create_infer_request()

    def __call__(self, inputs: np.ndarray) -> Any:
        self.request.infer({0: inputs})
        return self.request.get_output_tensor(0).data

    def to_numpy(self, outputs: Any) -> np.ndarray:
        return np.array(outputs, copy=True)  # the request reuses its output buffer

    def describe(self) -> RuntimeDescription:
        return RuntimeDescription(
            runtime=self.runtime, version=metadata.version("openvino"), device="CPU",
            precision=self.confirmed_precision, threads=self.platform.threads,
            details={
                "INFERENCE_PRECISION_HINT": _HINTS[self.precision],
                "PERFORMANCE_HINT": "LATENCY",
                "cpu": self.core.get_property("CPU", "FULL_DEVICE_NAME"),
                "build": self.ov.get_version(),
            },
        )
