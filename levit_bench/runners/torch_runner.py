"""PyTorch: the fused model traced with torch.jit.trace (as the paper's speed_test did),
the fused model eager, or the unfused eager model (the paper's baseline before folding)."""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
import torch

from levit_bench.exporters.fuse import fuse_for_inference
from levit_bench.runners.artifacts import Artifact
from levit_bench.runners.base import Runner, RunnerError, RuntimeDescription

_CPU_PRECISIONS = ("fp32",)
_GPU_PRECISIONS = ("mixed", "fp32")


class TorchRunner(Runner):
    runtime = "torch"

    def __init__(self, platform, options):
        super().__init__(platform, options)
        allowed = _GPU_PRECISIONS if platform.device == "cuda" else _CPU_PRECISIONS
        if self.precision not in allowed:
            raise RunnerError(f"torch on {platform.name} runs {' or '.join(allowed)}, not {self.precision}")
        self.device = torch.device("cuda:0" if platform.device == "cuda" else "cpu")
        self._saved_threads = torch.get_num_threads()

    def load(self, artifact: Artifact, batch: int) -> None:
        if self.platform.threads:
            torch.set_num_threads(self.platform.threads)
        reference = artifact.reference_model  # shared with the parity check: never changed here
        model = fuse_for_inference(reference) if self.mode != "unfused" else copy.deepcopy(reference)
        model = model.to(self.device).eval()
        if self.mode == "traced":
            example = torch.zeros(batch, 3, artifact.resolution, artifact.resolution, device=self.device)
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # traced on purpose: the paper's way
                model = torch.jit.trace(model, example)
        self.model = model

    def to_input(self, images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(images).to(self.device)

    def __call__(self, inputs: torch.Tensor) -> Any:
        with torch.no_grad(), torch.autocast(self.device.type, enabled=self.precision == "mixed"):
            outputs = self.model(inputs)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return outputs

    def to_numpy(self, outputs: torch.Tensor) -> np.ndarray:
        return outputs.float().cpu().numpy()

    def close(self) -> None:
        torch.set_num_threads(self._saved_threads)

    def describe(self) -> RuntimeDescription:
        device = str(self.device)
        if self.device.type == "cuda":
            device += f" ({torch.cuda.get_device_name(self.device)})"
        return RuntimeDescription(
            runtime=self.runtime, version=torch.__version__, device=device, precision=self.precision,
            threads=self.platform.threads or torch.get_num_threads(), mode=self.mode,
            details={"autocast": "float16" if self.precision == "mixed" else None},
        )
