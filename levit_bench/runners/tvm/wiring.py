"""Which nodes of the exported ONNX graph each compiled TVM kernel runs, for `profile`.

Relax's ONNX importer names nothing after the graph, and fusion renames what it fuses. So the
import binds every node's result to a variable of its own (`onnx<i>`, remembered as that
node's first output tensor), and each kernel call after `FuseOps` is traced back to those
variables (`kernel_wiring`). `FuseTIR` then turns each fused function into the PrimFunc of the
same name that the VM calls, in the order of `main`'s bindings.
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


def kernel_wiring(unfused_mod, fused_mod, tensors: dict[str, str], graph_outputs: list[str]) -> list[dict]:
    """Per kernel call in `main` after FuseOps, in order: the function it calls, the ONNX tensors
    it writes (its output, and those of the nodes fused into it) and those it reads; a value the
    graph has no name for gets a unique one, so that the data flow still shows.

    FuseOps shares one function among identical groups (LeViT's repeated blocks), so names read
    inside a fused function would be its first call site's. Each call site is traced instead:
    its function's bindings are replayed on the call's own arguments and matched, op by op, to
    `unfused_mod`'s bindings (before FuseOps), whose variables carry the `onnx<i>` names."""
    tvm = import_tvm()
    from tvm import relax

    call_tir = tvm.ir.Op.get("relax.call_tir")

    def key(value, origin) -> tuple | None:
        """What a binding computes, in terms of `main`'s unfused variables (None: not traced)."""
        if isinstance(value, relax.TupleGetItem) and isinstance(value.tuple_value, relax.Var):
            return ("item", origin(value.tuple_value), value.index)
        if isinstance(value, relax.Call) and value.op == call_tir:
            arguments = [origin(a) for a in _fields(value.args[1], relax) if isinstance(a, relax.Var)]
            return (value.args[0].name_hint, *(a for a in arguments if a is not None))  # None: a constant
        return None

    unfused: dict[tuple, Any] = {}
    for block in unfused_mod["main"].body.blocks:
        for binding in block.bindings:
            found = key(binding.value, lambda var: var)
            if found is not None:
                unfused.setdefault(found, binding.var)
    functions = {gv.name_hint: f for gv, f in fused_mod.functions.items() if isinstance(f, relax.Function)}
    origin_of: dict[Any, Any] = {}  # a fused main's variable -> the unfused variable it holds

    def origin(var):
        return origin_of.get(var, var)

    unnamed: dict[Any, str] = {}

    def name(var) -> str:
        var = origin(var)
        if var.name in tensors:
            return tensors[var.name]
        return unnamed.setdefault(var, f"{var.name}#{len(unnamed)}")

    calls = []
    for block in fused_mod["main"].body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Call) and value.op == call_tir:
                arguments = [a for a in _fields(value.args[1], relax) if isinstance(a, relax.Var)]
                origin_of[binding.var] = unfused.get(key(value, origin), binding.var)
                calls.append((value.args[0].name_hint, binding.var, arguments, []))
            elif isinstance(value, relax.Call) and getattr(value.op, "name_hint", None) in functions:
                members = _replay(functions[value.op.name_hint], value.args, origin, unfused, key, relax)
                if members:
                    origin_of[binding.var] = members[-1]
                arguments = [a for a in value.args if isinstance(a, relax.Var)]
                calls.append((value.op.name_hint, binding.var, arguments, members[:-1]))
            else:
                found = key(value, origin)
                if found is not None and found in unfused:
                    origin_of[binding.var] = unfused[found]
    output = fused_mod["main"].body.body
    last = origin(output) if isinstance(output, relax.Var) else None
    if last is not None and last.name not in tensors and graph_outputs:
        tensors = {**tensors, last.name: graph_outputs[0]}
    return [{"function": function, "outputs": list(dict.fromkeys([name(var), *(name(m) for m in members
                                                                               if m.name in tensors)])),
             "inputs": [name(a) for a in arguments]}
            for function, var, arguments, members in calls]


def called_as(wiring: list[dict], mod) -> list[dict]:
    """`wiring` with each entry's function renamed as `mod`'s `main` now calls it, call by call
    (passes after FuseTIR copy PrimFuncs under new names); unchanged if the calls no longer
    line up one to one."""
    tvm = import_tvm()
    from tvm import relax

    call_tir = tvm.ir.Op.get("relax.call_tir")
    names = [binding.value.args[0].name_hint for block in mod["main"].body.blocks for binding in block.bindings
             if isinstance(binding.value, relax.Call) and binding.value.op == call_tir]
    if len(names) != len(wiring):
        return wiring
    return [{**entry, "function": name} for entry, name in zip(wiring, names)]


def _replay(function, arguments, origin, unfused: dict, key, relax) -> list:
    """The unfused variables a call of a fused `function` computes, in its bindings' order."""
    local = {param: origin(a) if isinstance(a, relax.Var) else None for param, a in zip(function.params, arguments)}
    members = []
    for block in function.body.blocks:
        for binding in block.bindings:
            found = unfused.get(key(binding.value, lambda var: local.get(var, var)))
            if found is None:
                return members
            local[binding.var] = found
            members.append(found)
    return members


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
