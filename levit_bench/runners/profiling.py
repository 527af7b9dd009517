"""Where a cell's time goes: a runtime's own per-kernel profile, told in the model's components.

Every runner that can profile returns a `Profile`: its kernels (what the runtime executed,
timed by its own profiler, per call over the protocol's measured calls) and the runtime's
total per call while profiling. Each kernel is matched to nodes of the exported graph, by its
name, the tensors it writes, or the nodes the runtime says it fused; the sidecar's component
map (`exporters/components.py`) names their component. A kernel that ran several nodes
belongs to the component most of its computing (non-layout) nodes belong to. A kernel the
runtime made anew (ORT splits HardSwish into HardSigmoid and Mul; a layout transform writes
new tensors) is `layout` when it converts layouts, else belongs with the kernel that reads
what it writes, or else the one that writes what it reads (never a layout neighbour: a
converted Conv between two layout reorders is still a Conv), or, when the runtime names no
tensors at all, the kernel it runs before (kernels come in the order they ran). A kernel
still unmatched is `other`: counted, never dropped.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass, field

from levit_bench.errors import LevitBenchError
from levit_bench.models.components import LAYOUT, OTHER, op_kind


@dataclass(frozen=True)
class Kernel:
    name: str  # the runtime's name for it
    op: str  # the runtime's op or kernel type
    ms: float  # per call
    outputs: tuple[str, ...] = ()  # the tensors it writes, where the runtime names them
    inputs: tuple[str, ...] = ()  # the tensors it reads, likewise
    covers: tuple[str, ...] = ()  # the exported graph's nodes it runs, where the runtime says
    component: str | None = None  # where the runtime itself knows (torch: from module paths)


@dataclass
class Profile:
    runtime: str
    calls: int  # measured calls the kernel times are averaged over
    total_ms: float  # the runtime's own time per call while profiling: the mean, as the kernels'
    kernels: list[Kernel]
    details: dict = field(default_factory=dict)  # how it was profiled


class NoComponentMap(LevitBenchError):
    pass


def _nodes_of(kernel: Kernel, nodes: Mapping[str, dict], by_output: Mapping[str, str]) -> list[str]:
    found = [n for n in kernel.covers if n in nodes]
    if kernel.name in nodes:
        found.append(kernel.name)
    found += [by_output[o] for o in kernel.outputs if o in by_output]
    return list(dict.fromkeys(found))


def component_of(kernel: Kernel, nodes: Mapping[str, dict], by_output: Mapping[str, str]) -> str | None:
    """The kernel's own component (None: it matches no node of the exported graph)."""
    if kernel.component is not None:
        return kernel.component
    components = [nodes[n]["component"] for n in _nodes_of(kernel, nodes, by_output)]
    computing = [c for c in components if c != LAYOUT] or components
    return collections.Counter(computing).most_common(1)[0][0] if computing else None


def _components(kernels: list[Kernel], nodes: Mapping[str, dict], by_output: Mapping[str, str]) -> list[str]:
    found = [component_of(k, nodes, by_output) for k in kernels]
    for index, kernel in enumerate(kernels):  # a layout conversion the runtime inserted
        if found[index] is None and op_kind(kernel.op.split("/")[0]) == LAYOUT:
            found[index] = LAYOUT
    readers: dict[str, list[int]] = collections.defaultdict(list)
    writer: dict[str, int] = {}
    for index, kernel in enumerate(kernels):
        for tensor in kernel.inputs:
            readers[tensor].append(index)
        for tensor in kernel.outputs:
            writer[tensor] = index
    for _ in range(len(kernels)):  # until nothing changes: a chain of new kernels settles link by link
        changed = False
        for index, kernel in enumerate(kernels):
            if found[index] is None:
                near = [found[j] for t in kernel.outputs for j in readers[t]]
                near += [found[writer[t]] for t in kernel.inputs if t in writer]
                found[index] = next((c for c in near if c not in (None, LAYOUT)), None)  # compute is not layout
                changed |= found[index] is not None
        if not changed:
            break
    for index, kernel in enumerate(kernels):  # named no tensor at all: the next kernel run, or the last
        if found[index] is None and not (kernel.inputs or kernel.outputs):
            later = (c for c in found[index + 1:] if c is not None)
            earlier = (c for c in reversed(found[:index]) if c is not None)
            found[index] = next(later, None) or next(earlier, None)
    return [c or OTHER for c in found]


def component_map_of(sidecar: Mapping) -> dict:
    """The artifact's node -> component map (`exporters/components.py`)."""
    if not sidecar.get("components"):
        model = sidecar["model"]
        raise NoComponentMap(f"{model}'s artifact was exported before component maps; export it again "
                             f"(levit-bench export --model {model})")
    return sidecar["components"]


# Times per call are kept to the nanosecond: a small net's whole profile is a tenth of a
# millisecond, and components rounded coarser no longer add up to the kernels' total.
MS_DIGITS = 6


def by_component(profile: Profile, component_map: Mapping) -> list[dict]:
    """Per component of the model's vocabulary (in its order, then `layout` where the vocabulary
    lacks it, and `other`): ms per call, share of the kernels' sum, and how many kernels."""
    nodes = component_map["nodes"]
    by_output = {output: name for name, node in nodes.items() for output in node["outputs"]}
    # every family gets `layout` (a runtime inserts layout conversions into any model) and `other`
    named = [name for name in component_map["vocabulary"] if name != OTHER]
    totals: dict[str, float] = dict.fromkeys([*named, LAYOUT, OTHER], 0.0)
    counts: collections.Counter = collections.Counter()
    for kernel, component in zip(profile.kernels, _components(profile.kernels, nodes, by_output)):
        totals[component] = totals.get(component, 0.0) + kernel.ms
        counts[component] += 1
    kernels_ms = sum(totals.values())
    return [{"name": name, "ms": round(ms, MS_DIGITS), "share": round(ms / kernels_ms, 4) if kernels_ms else 0.0,
             "kernels": counts[name]}
            for name, ms in totals.items()]
