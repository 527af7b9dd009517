"""ExecuTorch: the fused model exported by torch.export, lowered to XNNPACK, saved as a `.pte`.

The model is put in the `xnnpack` graph form first (`exporters.fuse.graph_form`), the ops
XNNPACK's partitioner delegates, since an op it does not take runs on ExecuTorch's portable
kernels, one at a time, and splits the graph into several delegates. What was delegated and what
was not is counted from the lowered program and kept in the sidecar, so that every record of a
`.pte` says it. int8 is PT2E quantization with XNNPACK's quantizer (symmetric, weights per
channel), calibrated on the images given, before the lowering.
"""

from __future__ import annotations

import collections
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from levit_bench.errors import LevitBenchError
from levit_bench.exporters.fuse import fuse_for_inference, graph_form

DELEGATE_CALL = "executorch_call_delegate"
# what moves no data at all: not an op that runs on either side
_BOOKKEEPING = {"getitem", "executorch_call_delegate"}


def _op_name(target) -> str:
    name = getattr(target, "__name__", None) or str(target)
    return name.split(" ")[0].removeprefix("aten.").removesuffix(".default")


def _module_path(node) -> str:
    """The module path the node was exported in (`stages.0.blocks.1.attn.qkv`; "" at the top)."""
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


def delegation(lowered) -> dict:
    """How much of a lowered program XNNPACK runs: its delegates, the ops inside them, and the ops
    left to portable kernels (by name), from `to_edge_transform_and_lower`'s result; `nodes`, each
    delegate's ops in graph order with their module paths, is what a profile of XNNPACK's own
    operators is told in components by."""
    program = lowered.exported_program()
    graph = program.graph_module
    portable = collections.Counter(
        _op_name(node.target) for node in graph.graph.nodes
        if node.op == "call_function" and _op_name(node.target) not in _BOOKKEEPING)
    delegated = collections.Counter()
    nodes = []
    for name, module in graph.named_children():
        original = getattr(module, "original_module", None)
        if original is None:
            continue
        ops = [[_op_name(node.target), _module_path(node)] for node in original.graph.nodes
               if node.op == "call_function" and _op_name(node.target) not in _BOOKKEEPING]
        delegated.update(op for op, _ in ops)
        nodes.append(ops)
    return {"delegates": len(nodes), "delegated_ops": sum(delegated.values()),
            "portable_ops": sum(portable.values()), "delegated": dict(sorted(delegated.items())),
            "portable": dict(sorted(portable.items())), "nodes": nodes}


def _quantized(model: nn.Module, example: torch.Tensor, calibration: np.ndarray, batch: int) -> nn.Module:
    """`model` quantized by PT2E for XNNPACK, its observers fed the calibration images batch by batch."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(model, (example,)).module(), quantizer)
    batches = [calibration[i:i + batch] for i in range(0, len(calibration) - batch + 1, batch)]
    if not batches:
        raise LevitBenchError(f"{len(calibration)} calibration images make no batch of {batch}")
    with torch.no_grad():
        for images in batches:
            prepared(torch.from_numpy(np.ascontiguousarray(images, np.float32)))
    return convert_pt2e(prepared)


def lower_to_pte(reference: nn.Module, batch: int, resolution: int, precision: str, out: Path,
                 calibration: np.ndarray | None = None) -> dict:
    """Write `reference` (the unfused eval model) as an XNNPACK `.pte` for batches of `batch` to
    `out`; what the sidecar keeps of the lowering (delegation counts)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    model = graph_form(fuse_for_inference(reference), "xnnpack")
    example = torch.zeros(batch, 3, resolution, resolution)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' own deprecation notices, not the user's concern
        if precision == "int8":
            if calibration is None:
                raise LevitBenchError("int8 needs calibration images")
            model = _quantized(model, example, calibration, batch)
        lowered = to_edge_transform_and_lower(torch.export.export(model, (example,)),
                                              partitioner=[XnnpackPartitioner()])
        counts = delegation(lowered)
        out.write_bytes(lowered.to_executorch().buffer)
    return {"delegation": counts}
