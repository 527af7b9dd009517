"""PyTorch: the fused model traced with torch.jit.trace (as the paper's speed_test did),
the fused model eager, the unfused eager model (the paper's baseline before folding), or the
fused model compiled by Inductor ahead of time (`compiled`, `compiled-max-autotune`:
runners/torch_compiled.py)."""

from __future__ import annotations

import collections
import contextlib
import copy
import functools
import re
import statistics
import time
import warnings
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from levit_bench.exporters.fuse import fuse_for_inference
from levit_bench.models.components import LAYOUT, OTHER
from levit_bench.registry import family, get_spec
from levit_bench.runners.artifacts import Artifact
from levit_bench.runners.base import Runner, RunnerError, RuntimeDescription
from levit_bench.runners import torch_compiled
from levit_bench.runners.measure import Protocol, measure
from levit_bench.runners.profiling import Kernel, Profile

_CPU_PRECISIONS = ("fp32",)
_GPU_PRECISIONS = ("mixed", "fp32")
CALL_RANGE = "levit_bench.call"  # one measured call, in a profile
MODULE_RANGE = "module:"  # a module's forward, in a profile of an eager model


@contextlib.contextmanager
def _module_ranges(model) -> Iterator[None]:
    """Every module's forward inside a `module:<path>` profiler range (eager models only)."""
    if model is None or isinstance(model, torch.jit.ScriptModule):
        yield
        return
    from torch.profiler import record_function

    handles, open_ranges = [], []
    for path, module in model.named_modules():
        def enter(module, args, path=path):
            open_ranges.append(record_function(MODULE_RANGE + path))
            open_ranges[-1].__enter__()

        def leave(module, args, output):
            open_ranges.pop().__exit__(None, None, None)

        handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


# Ops the TorchScript executor may run as others (its DecomposeOps pass): each is listed with
# the ops it becomes, so the events of either form find their module path.
DECOMPOSED = {"aten::addmm": ("aten::mm", "aten::add")}


def _graph_ops(traced) -> list[tuple[str, str]]:
    """(op, module path) of each op a traced model runs, in the order it runs them."""
    ops = []
    for node in traced.inlined_graph.nodes():
        if node.kind().startswith("aten::"):
            innermost = node.scopeName().split("/")[-1]  # "__module.stages.0.blocks.0.attn.qkv"
            path = innermost.removeprefix("__module").removeprefix(".")
            ops.extend((kind, path) for kind in (node.kind(), *DECOMPOSED.get(node.kind(), ())))
    return ops


def _traced_paths(forward, graph: list[tuple[str, str]]) -> dict[int, str]:
    """id of each top-level op event of one traced call -> its module path: the events and the
    graph's ops walked side by side, an event taking the next graph op of its name."""
    paths, position = {}, 0
    for event in forward.cpu_children:
        found = next((i for i in range(position, len(graph)) if graph[i][0] == event.name), None)
        if found is not None:
            paths[id(event)] = graph[found][1]
            position = found + 1
    return paths


def _attribute(events, rules, graph: list[tuple[str, str]] | None, calls: int, device_time: bool) -> Profile:
    """Self time per (component, op) over the last `calls` call ranges, as kernels."""
    ranges = [e for e in events if e.name == CALL_RANGE][-calls:]
    kept = {id(e) for e in ranges}
    traced: dict[int, str] = {}
    if graph is not None:
        for call in ranges:
            for forward in call.cpu_children:
                traced.update(_traced_paths(forward, graph))
    microseconds: dict[tuple[str, str], float] = collections.defaultdict(float)
    for event in events:
        chain = [event]
        while chain[-1].cpu_parent is not None:
            chain.append(chain[-1].cpu_parent)
        if id(chain[-1]) not in kept or event.name == CALL_RANGE:
            continue
        if graph is None:  # eager: the innermost module range
            path = next((e.name[len(MODULE_RANGE):] for e in chain if e.name.startswith(MODULE_RANGE)), "")
            op = "" if event.name.startswith(MODULE_RANGE) else event.name  # a range's own time is Python's
        else:  # traced: the top-level op (right under `forward`) the event belongs to
            top = chain[-3] if len(chain) >= 3 else event
            path, op = traced.get(id(top)), top.name
        component = OTHER if path is None else rules.component(path, op)
        spent = event.self_device_time_total if device_time else event.self_cpu_time_total
        microseconds[(component, op or "python")] += spent
    kernels = [Kernel(f"{op} @ {component}", op, us / len(ranges) / 1e3, component=component)
               for (component, op), us in microseconds.items()]
    total_ms = statistics.fmean(e.cpu_time_total for e in ranges) / 1e3
    return Profile("torch", len(ranges), total_ms, kernels,
                   {"profiler": f"torch.profiler (self {'device' if device_time else 'CPU'} time)"})


def _attribute_kernels(events, calls: int) -> Profile:
    """Self time per kernel of a compiled package over the last `calls` call ranges. Inductor names
    a kernel by the ops it fused (`cpp_fused__softmax_add_3`), an external call by its library op
    (`aoti_torch_cpu__linear_pointwise`), never by module: a kernel of data movement only is
    `layout`, every other one `other` (counted, never dropped)."""
    ranges = [e for e in events if e.name == CALL_RANGE][-calls:]
    kept = {id(e) for e in ranges}
    microseconds: dict[str, float] = collections.defaultdict(float)
    for event in events:
        top = event
        while top.cpu_parent is not None:
            top = top.cpu_parent
        if id(top) in kept and event.name != CALL_RANGE:
            microseconds[_kernel_name(event.name)] += event.self_cpu_time_total
    kernels = [Kernel(name, name, us / len(ranges) / 1e3, component=_kernel_component(name))
               for name, us in microseconds.items()]
    total_ms = statistics.fmean(e.cpu_time_total for e in ranges) / 1e3
    return Profile("torch", len(ranges), total_ms, kernels,
                   {"profiler": "torch.profiler over the AOTInductor package's kernels (self CPU time)"})


def _kernel_name(name: str) -> str:
    """`graph_0_cpp_fused_cat_clone_12` -> `cpp_fused_cat_clone`: one entry per kind of kernel."""
    return re.sub(r"_\d+$", "", re.sub(r"^graph_\d+_", "", name))


# the aten ops whose names a fused kernel of data movement only is made of
_MOVING = frozenset({"view", "clone", "cat", "permute", "transpose", "reshape", "unsqueeze", "squeeze", "slice",
                     "select", "split", "expand", "copy", "as_strided", "unbind", "flatten", "stack", "constant",
                     "pad"})


def _kernel_component(name: str) -> str:
    if not name.startswith("cpp_fused_"):
        return OTHER
    words = [w for w in name.removeprefix("cpp_fused_").split("_") if w and w not in ("with", "sizes", "default")]
    return LAYOUT if words and all(w in _MOVING for w in words) else OTHER


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
        from torch.profiler import profile as torch_profile

        self.measure(inputs, replace(protocol, min_calls=0, min_s=0.0))  # the warm-up, unprofiled
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.type == "cuda" else [])

        def call() -> None:
            with record_function(CALL_RANGE):
                self(inputs)

        compiled = self.mode in torch_compiled.MODES
        with _module_ranges(None if compiled else self.model), torch_profile(activities=activities) as profiler:
            timings = measure(call, replace(protocol, warmup_calls=1, warmup_s=0.0))
        if compiled:
            return _attribute_kernels(profiler.events(), len(timings.samples_s))
        rules = family(get_spec(self.artifact.model).family).components
        graph = _graph_ops(self.model) if self.mode == "traced" else None
        return _attribute(profiler.events(), rules, graph, len(timings.samples_s), self.device.type == "cuda")

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
                "pt2_load_s": round(self.package_load_s, 4)}
