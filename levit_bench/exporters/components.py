"""Each node of an exported graph mapped to its model component, surviving onnxsim.

The torch.export-based exporter stamps every node with the module path it was traced in
(metadata `pkg.torch.onnx.name_scopes`); onnxsim drops node metadata and rewrites nodes
(MatMul+Add -> Reshape, Gemm, Reshape; consecutive reshapes merged), but keeps the names of
weights (`stages.0.blocks.0.attn.qkv.bias`) and of the tensors that the original graph also
had. So the module path is read before simplifying, keyed by output tensor; after simplifying,
a node takes the path of a weight it reads, else of a tensor it still produces, else from the
nodes it feeds (or failing that, the nodes feeding it).
The family's rules (`models/components.py`) then name the component from path and op type.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

from levit_bench.models.components import OTHER, ComponentRules

SCOPES_KEY = "pkg.torch.onnx.name_scopes"


def _module_path(node) -> str | None:
    for entry in node.metadata_props:
        if entry.key == SCOPES_KEY:
            try:
                scopes = ast.literal_eval(entry.value)  # ['', 'stages', ..., 'stages.0.blocks.0.attn.qkv', 'linear']
            except (ValueError, SyntaxError):
                return None
            return scopes[-2] if len(scopes) >= 2 else ""  # the last entry is the op's own name
    return None


def tensor_scopes(model) -> dict[str, str]:
    """Output tensor name -> module path, for the exporter's raw graph (before onnxsim)."""
    scopes = {}
    for node in model.graph.node:
        path = _module_path(node)
        if path is not None:
            for output in node.output:
                scopes[output] = path
    return scopes


def node_paths(model, scopes: Mapping[str, str]) -> dict[str, str | None]:
    """Node name -> module path of the (simplified) graph, None where nothing tells."""
    nodes = list(model.graph.node)
    weights = {w.name for w in model.graph.initializer if "." in w.name}  # named after their module

    def own_path(node) -> str | None:
        weight = next((i for i in node.input if i in weights), None)
        if weight is not None:
            return weight.rpartition(".")[0]
        return next((scopes[o] for o in node.output if o in scopes), None)

    paths: dict[str, str | None] = {n.name: own_path(n) for n in nodes}
    consumers: dict[str, list] = {}
    producers: dict[str, object] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
        for name in node.output:
            producers[name] = node
    for node in reversed(nodes):  # graph order is topological: consumers are settled first
        if paths[node.name] is None:
            paths[node.name] = next((paths[c.name] for o in node.output for c in consumers.get(o, ())
                                     if paths[c.name] is not None), None)
    for node in nodes:
        if paths[node.name] is None:
            paths[node.name] = next((paths[producers[i].name] for i in node.input
                                     if i in producers and paths[producers[i].name] is not None), None)
    return paths


def component_map(model, scopes: Mapping[str, str], rules: ComponentRules) -> dict:
    """What the sidecar keeps: the vocabulary, and per node its op, outputs, module path and component."""
    paths = node_paths(model, scopes)
    nodes = {}
    for node in model.graph.node:
        path = paths[node.name]
        nodes[node.name] = {
            "op": node.op_type, "outputs": list(node.output), "path": path,
            "component": OTHER if path is None else rules.component(path, node.op_type),
        }
    return {"vocabulary": list(rules.names), "nodes": nodes}
