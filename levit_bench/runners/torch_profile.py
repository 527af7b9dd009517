"""Where a profiled torch call spent its time: torch.profiler's events told in components.

Eager models: every module's forward is a `module:<path>` range, and an op's self time goes to
the innermost one. Traced models: the traced graph's op nodes carry their module scope and run
in graph order, so the call's top-level op events are matched to them in turn. A compiled
package: Inductor names kernels by the ops they fused, never by module, so only data movement
is told apart (`layout`); the rest is `other`, counted and never dropped.
"""

from __future__ import annotations

import collections
import contextlib
import re
import statistics
from collections.abc import Iterator

import torch

from levit_bench.models.components import LAYOUT, OTHER
from levit_bench.runners.profiling import Kernel, Profile

CALL_RANGE = "levit_bench.call"  # one measured call, in a profile
MODULE_RANGE = "module:"  # a module's forward, in a profile of an eager model


@contextlib.contextmanager
def module_ranges(model) -> Iterator[None]:
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


def graph_ops(traced) -> list[tuple[str, str]]:
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


def _call_ranges(events, calls: int) -> tuple[list, set[int]]:
    """The last `calls` measured-call ranges, and their ids (an event belongs to a call when the
    outermost range above it is one of them)."""
    ranges = [e for e in events if e.name == CALL_RANGE][-calls:]
    return ranges, {id(e) for e in ranges}


def _mean_call_ms(ranges) -> float:
    return statistics.fmean(e.cpu_time_total for e in ranges) / 1e3


def attribute(events, rules, graph: list[tuple[str, str]] | None, calls: int, device_time: bool) -> Profile:
    """Self time per (component, op) over the last `calls` call ranges, as kernels."""
    ranges, kept = _call_ranges(events, calls)
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
    return Profile("torch", len(ranges), _mean_call_ms(ranges), kernels,
                   {"profiler": f"torch.profiler (self {'device' if device_time else 'CPU'} time)"})


def attribute_kernels(events, calls: int) -> Profile:
    """Self time per kernel of a compiled package over the last `calls` call ranges. Inductor names
    a kernel by the ops it fused (`cpp_fused__softmax_add_3`), an external call by its library op
    (`aoti_torch_cpu__linear_pointwise`), never by module: a kernel of data movement only is
    `layout`, every other one `other` (counted, never dropped)."""
    ranges, kept = _call_ranges(events, calls)
    microseconds: dict[str, float] = collections.defaultdict(float)
    for event in events:
        top = event
        while top.cpu_parent is not None:
            top = top.cpu_parent
        if id(top) in kept and event.name != CALL_RANGE:
            microseconds[_kernel_name(event.name)] += event.self_cpu_time_total
    kernels = [Kernel(name, name, us / len(ranges) / 1e3, component=_kernel_component(name))
               for name, us in microseconds.items()]
    return Profile("torch", len(ranges), _mean_call_ms(ranges), kernels,
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
