"""An ExecuTorch profile: ETDump's times of XNNPACK's own operators, told in model components.

XNNPACK names its operators by kind and instance (`Fully Connected (NC, F32) GEMM #12`, the
12th of that kind it made), not by the graph node they came from, and does not run them in the
graph's order. So the k-th operator of a computing kind is the k-th delegated node of the ops that
kind comes from (the lowering kept those nodes, in graph order, with their module paths:
`exporters/pte.py`), where the counts agree, and that node's module path and the family's rules
name its component; the kinds that only move data are `layout`. An operator no node explains is
left to `runners/profiling.py`, which makes it `other`: counted, never dropped.
"""

from __future__ import annotations

import re
import statistics
import tempfile
from pathlib import Path

from levit_bench.models.components import LAYOUT
from levit_bench.runners.profiling import Kernel, Profile

# XNNPACK operator kind -> the aten ops (as exporters/pte.py names them) it runs
_FROM = {
    "Fully Connected": ("linear", "addmm", "mm"),
    "Batch Matrix Multiply": ("bmm", "matmul"),
    "Add": ("add.Tensor",), "Subtract": ("sub.Tensor",), "Multiply": ("mul.Tensor",), "Divide": ("div.Tensor",),
    "HardSwish": ("hardswish",), "Softmax": ("_softmax",), "Sigmoid": ("sigmoid",), "Clamp": ("clamp", "hardtanh",
                                                                                             "relu"),
    "Convolution": ("convolution",), "Mean": ("mean.dim",), "Global Average Pooling": ("mean.dim",),
    "Max Pooling": ("max_pool2d_with_indices", "max_pool2d"),
}
_MOVING = {"Static Reshape", "Copy", "Transpose", "Concatenate", "Slice", "Constant Pad", "Even Split",
           "Convert", "Static Slice", "Static Transpose"}  # XNNPACK kinds that only move data
_ENVELOPES = {"DELEGATE_CALL", "OPERATOR_CALL", "Method::execute"}  # ranges around the operators


def _kind(name: str) -> str:
    return re.split(r" \(| #", name, maxsplit=1)[0]


def _instance(name: str) -> int:
    found = re.search(r"#(\d+)$", name)
    return int(found.group(1)) if found else 0


def _torch_op(op: str) -> str:
    """`view_copy` -> `aten::view`, `add.Tensor` -> `aten::add`: the spelling the rules use."""
    return "aten::" + op.split(".")[0].removesuffix("_copy")


def _components(names: list[str], nodes: list[list[str]], rules) -> list[str | None]:
    """Each operator's component: `layout` for data movement, the k-th node's for the k-th operator
    of a computing kind whose count of operators is its count of nodes, else None."""
    found: list[str | None] = [LAYOUT if _kind(name) in _MOVING else None for name in names]
    for kind, ops in _FROM.items():
        operators = sorted((i for i, name in enumerate(names) if _kind(name) == kind),
                           key=lambda i: _instance(names[i]))
        paired = [node for node in nodes if node[0] in ops]
        if len(paired) == len(operators):
            for index, (op, path) in zip(operators, paired):
                found[index] = rules.component(path, _torch_op(op))
    return found


def profile_module(module, call_inputs: list, measure_calls, nodes: list[list[str]], rules) -> Profile:
    """Every operator's mean time per measured call of `module` (a program loaded with ETDump on),
    `measure_calls(call)` timing the calls (the first a warm-up, left out) and returning their times."""
    from executorch.devtools import Inspector

    calls = len(measure_calls(lambda: module.forward(call_inputs)))
    with tempfile.TemporaryDirectory() as scratch:
        dump = Path(scratch) / "profile.etdp"
        module.write_etdump_result_to_file(str(dump))
        inspector = Inspector(etdump_path=str(dump))
    timed = [(e.name, statistics.fmean(e.perf_data.raw[-calls:])) for block in inspector.event_blocks
             if block.name == "Execute" for e in block.events if e.perf_data is not None]
    total_ms = next(ms for name, ms in timed if name == "Method::execute")
    ops = [(name, ms) for name, ms in timed if name not in _ENVELOPES]
    portable = [name.startswith("native_call_") for name, _ in ops]
    delegated = iter(_components([name for (name, _), p in zip(ops, portable) if not p],
                                 [node for delegate in nodes for node in delegate], rules))
    kernels = [Kernel(name, name.removeprefix("native_call_") if p else _kind(name), ms,
                      component=None if p else next(delegated)) for (name, ms), p in zip(ops, portable)]
    return Profile("executorch", calls, total_ms, kernels,
                   {"profiler": "ETDump (XNNPACK's operators, and portable kernels)"})
