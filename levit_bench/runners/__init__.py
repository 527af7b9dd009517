"""Runtimes behind one interface, platforms, the measurement protocol, runs and sweeps.

Each runtime module imports its third-party package only when a runner is made, so that a
missing runtime is one clear error and the rest of the tool works without it.
"""

from __future__ import annotations

import importlib

from levit_bench.errors import LevitBenchError

RUNTIMES = {
    "torch": ("levit_bench.runners.torch_runner", "TorchRunner"),
    "onnxruntime": ("levit_bench.runners.onnxruntime_runner", "OnnxRuntimeRunner"),
    "openvino": ("levit_bench.runners.openvino_runner", "OpenVinoRunner"),
    "tvm": ("levit_bench.runners.tvm_runner", "TvmRunner"),
}
TORCH_MODES = ("traced", "eager", "unfused")
TVM_MODES = ("tuned", "untuned")
MODES = {"torch": TORCH_MODES, "tvm": TVM_MODES}


def runner_class(runtime: str):
    if runtime not in RUNTIMES:
        raise LevitBenchError(f"unknown runtime {runtime!r}; known runtimes: {', '.join(RUNTIMES)}")
    module, name = RUNTIMES[runtime]
    return getattr(importlib.import_module(module), name)
