"""PyTorch: the fused model traced with torch.jit.trace (as the paper's speed_test did),
the fused model eager, the unfused eager model (the paper's baseline before folding), or the
fused model compiled by Inductor ahead of time (`compiled`, `compiled-max-autotune`:
runners/torch_compiled.py)."""

from __future__ import annotations

import copy
import functools
import time
import warnings
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from levit_bench.exporters.fuse import fuse_for_inference
from levit_bench.registry import family, get_spec
from levit_bench.runners.artifacts import Artifact
from levit_bench.runners.base import Runner, RunnerError, RuntimeDescription
from levit_bench.runners import torch_compiled, torch_profile
from levit_bench.runners.measure import Protocol, measure
from levit_bench.runners.profiling import Profile

_CPU_PRECISIONS = ("fp32",)
_GPU_PRECISIONS = ("mixed", "fp32")


class TorchRunner(Runner):
    runtime = "torch"
    multi_stream = True
    needs_pytorch_model = True

    def __init__(self, platform, options):
        super().__init__(platform, options)
        allowed = _GPU_PRECISIONS if platform.device == "cuda" else _CPU_PRECISIONS
        if self.precision not in allowed:
            raise RunnerError(f"torch on {platform.name} runs {' or '.join(allowed)}, not {self.precision}")
        self.device = torch.device("cuda:0" if platform.device == "cuda" else "cpu")
        if self.mode in torch_compiled.MODES and self.device.type != "cpu":
            raise RunnerError(f"torch:{self.mode} is compiled for the CPU, not {platform.name}")
        self._saved_threads = torch.get_num_threads()

    def load(self, artifact: Artifact, batch: int) -> None:
        if self.stream_threads:
            torch.set_num_threads(self.stream_threads)
        self.threads = torch.get_num_threads()  # as torch reports it, per stream
        self.artifact = artifact
        if self.mode in torch_compiled.MODES:
            self._load_compiled(artifact, batch)
            return
        reference = artifact.reference_model  # shared with the parity check: never changed here
        model = fuse_for_inference(reference) if self.mode != "unfused" else copy.deepcopy(reference)
        model = model.to(self.device).eval()
        if self.mode == "traced":
            example = torch.zeros(batch, 3, artifact.resolution, artifact.resolution, device=self.device)
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # traced on purpose: the paper's way
                model = torch.jit.trace(model, example)
        self.model = model

    def _load_compiled(self, artifact: Artifact, batch: int) -> None:
        """The package (compiled first if the work directory has none for it), loaded once per
        stream: a loaded package runs one call at a time."""
        self.built = torch_compiled.ensure_pt2(artifact, batch, torch_compiled.MODES[self.mode], self.options.workdir)
        t0 = time.perf_counter()
        self.packages = [torch_compiled.load_package(self.built.path) for _ in range(self.streams)]
        self.package_load_s = time.perf_counter() - t0
        self.model = self.packages[0]

    def to_input(self, images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(images).to(self.device)

    def stream_calls(self) -> list:
        """The one model, called from a thread per stream: its ops release the GIL, and each
        thread's first parallel region sizes its own OpenMP team to the stream's threads (a
        compiled model: a package per stream)."""
        if self.mode in torch_compiled.MODES:
            return [functools.partial(self._call, package) for package in self.packages]
        return [self] * self.streams

    def __call__(self, inputs: torch.Tensor) -> Any:
        return self._call(self.model, inputs)

    def _call(self, model, inputs: torch.Tensor) -> Any:
        with torch.no_grad(), torch.autocast(self.device.type, enabled=self.precision == "mixed"):
            outputs = model(inputs)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return outputs

    def to_numpy(self, outputs: torch.Tensor) -> np.ndarray:
        return outputs.float().cpu().numpy()

    def profile(self, inputs: torch.Tensor, protocol: Protocol) -> Profile:
        """torch.profiler over the protocol's calls, each call a `record_function` range (the
        first, a warm-up, is left out). Every op's self time goes to a module path: in eager
        modes from `record_function` ranges that module hooks open around every module; in
        the traced mode from the traced graph, whose op nodes carry their module scope and run
        in graph order. The family's rules then name the component."""
        from torch.profiler import ProfilerActivity, record_function
        from torch.profiler import profile as profiler_profile

        self.measure(inputs, replace(protocol, min_calls=0, min_s=0.0))  # the warm-up, unprofiled
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.type == "cuda" else [])

        def call() -> None:
            with record_function(torch_profile.CALL_RANGE):
                self(inputs)

        compiled = self.mode in torch_compiled.MODES
        with torch_profile.module_ranges(None if compiled else self.model), \
                profiler_profile(activities=activities) as profiler:
            timings = measure(call, replace(protocol, warmup_calls=1, warmup_s=0.0))
        if compiled:
            return torch_profile.attribute_kernels(profiler.events(), len(timings.samples_s))
        rules = family(get_spec(self.artifact.model).family).components
        graph = torch_profile.graph_ops(self.model) if self.mode == "traced" else None
        return torch_profile.attribute(profiler.events(), rules, graph, len(timings.samples_s),
                                       self.device.type == "cuda")

    def close(self) -> None:
        torch.set_num_threads(self._saved_threads)

    def describe(self) -> RuntimeDescription:
        device = str(self.device)
        if self.device.type == "cuda":
            device += f" ({torch.cuda.get_device_name(self.device)})"
        return RuntimeDescription(
            runtime=self.runtime, version=torch.__version__, device=device, precision=self.precision,
            threads=self.threads * self.streams, mode=self.mode,
            details={"autocast": "float16" if self.precision == "mixed" else None, **self._compiled_details()},
        )

    def _compiled_details(self) -> dict:
        if self.mode not in torch_compiled.MODES:
            return {}
        sidecar = self.built.sidecar
        return {"pt2": str(self.built.path), "pt2_sha256": self.built.sha256, "built_now": self.built.built_now,
                "compile_mode": sidecar["compile_mode"], "compile_s": sidecar["build_s"],
                "library_calls": sidecar["library_calls"],
                "pt2_load_s": round(self.package_load_s, 4)}
