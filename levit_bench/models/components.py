"""What a profile calls each part of a model: one vocabulary per family, declared next to the
family's modules, read by every runtime's profile.

A node of a graph (an ONNX node, a torch op) is placed by the module path it was traced in
(`stages.1.blocks.0.attn.qkv`) and its op type: the family's rules are tried in order and the
first that matches names its component. A node no rule names is `other`: it is counted, never
dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

OTHER = "other"
LAYOUT = "layout"  # an op kind: data movement that computes nothing

# Ops that only move or reshape data, in ONNX and in torch (aten) spelling, and the layout
# conversions runtimes insert (ONNX Runtime's NCHWc reorders, OpenVINO's Reorder).
LAYOUT_OPS = frozenset({
    "Reshape", "Transpose", "Split", "Slice", "Concat", "Squeeze", "Unsqueeze", "Flatten", "Expand",
    "Identity", "Gather", "Copy", "ReorderInput", "ReorderOutput", "Reorder",
    "aten::view", "aten::reshape", "aten::_unsafe_view", "aten::transpose", "aten::permute", "aten::t",
    "aten::split", "aten::split_with_sizes", "aten::slice", "aten::select", "aten::cat", "aten::contiguous",
    "aten::clone", "aten::copy_", "aten::expand", "aten::unsqueeze", "aten::squeeze", "aten::flatten",
    "aten::unbind", "aten::as_strided",
})


def op_kind(op: str) -> str:
    """`layout` for data movement, else the op type itself."""
    return LAYOUT if op in LAYOUT_OPS else op


@dataclass(frozen=True)
class Rule:
    """Nodes traced in a module whose path matches `scope` (a regular expression, searched), and,
    when `ops` is given, whose op type or kind (`layout`) is one of them, belong to `component`."""

    scope: str
    component: str
    ops: frozenset[str] = frozenset()

    def matches(self, path: str, op: str) -> bool:
        return (not self.ops or op in self.ops or op_kind(op) in self.ops) and re.search(self.scope, path) is not None


@dataclass(frozen=True)
class ComponentRules:
    rules: tuple[Rule, ...]
    names: tuple[str, ...] = field(init=False)  # the vocabulary, in the rules' order, then `other`

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", (*dict.fromkeys(r.component for r in self.rules), OTHER))

    def component(self, path: str, op: str) -> str:
        return next((r.component for r in self.rules if r.matches(path, op)), OTHER)


# A family that declares no vocabulary still has its data movement told apart.
GENERIC = ComponentRules((Rule("", LAYOUT, frozenset({LAYOUT})),))
