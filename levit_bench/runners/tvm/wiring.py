"""Which nodes of the exported ONNX graph each compiled TVM kernel runs, for `profile`.

Relax's ONNX importer names nothing after the graph, and fusion renames what it fuses. So the
import binds every node's result to a variable of its own (`onnx<i>`, remembered as that
node's first output tensor), and the kernels are read off the module right after `FuseOps`:
a fused function's bindings keep their variables' names, except its last (its output), which
every consumer's parameter still carries. `FuseTIR` then turns each fused function into the
PrimFunc of the same name that the VM calls, in the order of `main`'s bindings.
"""

from __future__ import annotations

import collections
from typing import Any

from levit_bench.runners.profiling import Kernel
from levit_bench.runners.tvm.api import import_tvm

TOKEN = "onnx"


def import_onnx(model) -> tuple[Any, dict[str, str]]:
    """The ONNX model as a Relax module (weights as constants) whose node results are bound to
    `onnx<i>` variables, and the ONNX tensor each of those names."""
    import_tvm()
    from tvm import relax
    from tvm.relax.frontend.onnx import onnx_frontend

    output_of = {node.name: node.output[0] for node in model.graph.node if node.output}
    tensors: dict[str, str] = {}

    class NamingImporter(onnx_frontend.ONNXGraphImporter):
        def _convert_operator(self, op_name, inputs, attrs, opset):
            converted = super()._convert_operator(op_name, inputs, attrs, opset)
            node = attrs.get("tvm_custom", {}).get("name")
            if isinstance(converted, relax.Call) and node in output_of:
                token = f"{TOKEN}{len(tensors)}"
                tensors[token] = output_of[node]
                converted = self.bb.emit(converted, name_hint=token)
            return converted

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    return NamingImporter({}, "float32").from_onnx(model.graph, opset), tensors


def kernel_wiring(fused_mod, tensors: dict[str, str], graph_outputs: list[str]) -> list[dict]:
    """Per kernel call in `main` (after FuseOps), in order: the function it calls, the ONNX
    tensors it writes (its output, and those of the nodes fused into it) and those it reads;
    a value the graph has no name for gets a unique one, so that the data flow still shows."""
    tvm = import_tvm()
    from tvm import relax

    call_tir = tvm.ir.Op.get("relax.call_tir")
    functions = {gv.name_hint: f for gv, f in fused_mod.functions.items() if isinstance(f, relax.Function)}
    known: dict[Any, str] = {}  # main's variables whose value the graph names
    parts: dict[Any, Any] = {}  # a tuple's item -> the tuple
    calls = []
    for block in fused_mod["main"].body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.TupleGetItem) and isinstance(value.tuple_value, relax.Var):
                parts[binding.var] = value.tuple_value
            elif isinstance(value, relax.Call) and value.op == call_tir:
                arguments = _fields(value.args[1], relax)
                calls.append((value.args[0].name_hint, binding.var, arguments, []))
            elif isinstance(value, relax.Call) and getattr(value.op, "name_hint", None) in functions:
                function = functions[value.op.name_hint]
                for var, param in zip(value.args, function.params):  # a consumer keeps its producer's name
                    if isinstance(var, relax.Var) and param.name in tensors:
                        known.setdefault(var, tensors[param.name])
                fused = [b.var.name for block in function.body.blocks for b in block.bindings]
                calls.append((value.op.name_hint, binding.var, list(value.args), fused))
    output = fused_mod["main"].body.body
    if isinstance(output, relax.Var) and graph_outputs:
        known.setdefault(output, graph_outputs[0])
    unnamed: dict[Any, str] = {}

    def name(var) -> str:
        var = parts.get(var, var)
        if var in known or var.name in tensors:
            return known.get(var) or tensors[var.name]
        return unnamed.setdefault(var, f"{var.name}#{len(unnamed)}")

    return [{"function": function, "outputs": [name(var), *(tensors[t] for t in fused if t in tensors)],
             "inputs": [name(a) for a in arguments if isinstance(a, relax.Var)]}
            for function, var, arguments, fused in calls]


def _fields(expr, relax) -> list:
    return list(expr.fields) if isinstance(expr, relax.Tuple) else [expr]


def timed_kernels(calls: list[list[tuple[str, float]]], wiring: list[dict]) -> list[Kernel]:
    """Kernels from the VM's timed calls (per model call: every function it called, in order,
    with seconds), averaged over the model calls and matched to the library's wiring: the
    n-th call of a function is the n-th binding that calls it. The VM's own builtins
    (allocations, shape checks, reshapes of a view) name no tensors and stay one per call site."""
    bindings: dict[str, list[dict]] = collections.defaultdict(list)
    for entry in wiring:
        bindings[entry["function"]].append(entry)
    seconds: dict[tuple[str, int], float] = collections.defaultdict(float)
    for call in calls:
        seen: collections.Counter = collections.Counter()
        for function, elapsed in call:
            seconds[(function, seen[function])] += elapsed
            seen[function] += 1
    kernels = []
    for (function, index), total in seconds.items():
        entry = bindings[function][index] if index < len(bindings.get(function, ())) else {}
        kernels.append(Kernel(f"{function}#{index}", function, total / len(calls) * 1e3,
                              outputs=tuple(entry.get("outputs", ())), inputs=tuple(entry.get("inputs", ()))))
    return kernels
