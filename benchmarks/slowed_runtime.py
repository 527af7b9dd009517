"""Two stand-in runtimes for benchmarks/stability.py: ONNX Runtime unchanged under another name,
and ONNX Runtime made 10% slower (each call sleeps a tenth of its own duration). `compare`
must call the first `same` and the second `slower` than onnxruntime."""

from __future__ import annotations

import time

from levit_bench.runners.onnxruntime_runner import OnnxRuntimeRunner
from levit_bench.runtimes import RuntimeSpec

SLOWDOWN = 0.10


class UnchangedRunner(OnnxRuntimeRunner):
    runtime = "onnxruntime-copy"


class SlowedRunner(OnnxRuntimeRunner):
    runtime = "onnxruntime-slowed"

    def __call__(self, inputs):
        started = time.perf_counter()
        outputs = super().__call__(inputs)
        time.sleep((time.perf_counter() - started) * SLOWDOWN)
        return outputs


SPECS = (
    RuntimeSpec("onnxruntime-copy", f"{__name__}:UnchangedRunner", package="onnxruntime", marker="P"),
    RuntimeSpec("onnxruntime-slowed", f"{__name__}:SlowedRunner", package="onnxruntime", marker="X"),
)
