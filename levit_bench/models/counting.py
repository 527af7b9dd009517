"""Parameter and multiply-add counts, measured on the meta device (no memory, no compute).

MACs follow the paper's convention: convolutions, linear layers and the two attention matrix
products; BatchNorm, activations, softmax and additions are not counted. torch's
FlopCounterMode counts exactly those ops and reports 2 FLOPs per multiply-add. Counting runs
on the meta device: it costs nothing, and torch's fused CPU attention kernel (used through
scaled_dot_product_attention by DeiT and MobileViT) is invisible to the counter on real
tensors, while its meta version is counted.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from levit_bench.models.components import ComponentRules


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _counted(model: nn.Module, resolution: int) -> FlopCounterMode:
    """The counter after one eval-mode forward pass on a single (3, resolution, resolution) image."""
    if next(model.parameters()).device.type != "meta":
        model = copy.deepcopy(model).to("meta")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.empty(1, 3, resolution, resolution, device="meta"))
    finally:
        model.train(was_training)
    return counter


def count_macs(model: nn.Module, resolution: int) -> int:
    """Multiply-adds of one eval-mode forward pass on a single image."""
    return _counted(model, resolution).get_total_flops() // 2


def component_flops(model: nn.Module, resolution: int, rules: ComponentRules) -> dict[str, int]:
    """FLOPs of one image per component: each module's own FLOPs (its count less its children's)
    go to the component its path names."""
    counts = _counted(model, resolution).get_flop_counts()
    root = type(model).__name__
    totals = {name[len(root) + 1:] if name != root else "": sum(ops.values())
              for name, ops in counts.items() if name == root or name.startswith(root + ".")}
    own = dict(totals)
    for path, total in totals.items():
        if path:
            own[path.rpartition(".")[0]] -= total  # a parent's count includes its children's
    flops = dict.fromkeys(rules.names, 0)
    for path, count in own.items():
        if count:
            component = rules.component(path, "")
            flops[component] = flops.get(component, 0) + count
    return flops


def component_bytes(model: nn.Module, resolution: int, rules: ComponentRules, batch: int = 1,
                    itemsize: int = 4) -> dict[str, int]:
    """An estimate of the bytes one image of a batch of `batch` moves per component: every leaf
    module's inputs and outputs, and its weights once per batch, each read or written once (what
    a roofline's arithmetic intensity divides by; caches make the true traffic lower, unfused
    layout ops make it higher)."""
    if next(model.parameters()).device.type != "meta":
        model = copy.deepcopy(model).to("meta")
    moved = dict.fromkeys(rules.names, 0)

    def hook(path: str):
        def count(module: nn.Module, inputs: tuple, output) -> None:
            if any(output is t for t in inputs):  # an identity (dropout, drop-path in eval) moves nothing
                return
            tensors = [t for t in (*inputs, output) if isinstance(t, torch.Tensor)]
            elements = sum(t.numel() for t in tensors) + sum(p.numel() for p in module.parameters(recurse=False))
            component = rules.component(path, "")
            moved[component] = moved.get(component, 0) + elements * itemsize
        return count

    handles = [m.register_forward_hook(hook(path)) for path, m in model.named_modules() if not any(m.children())]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.empty(batch, 3, resolution, resolution, device="meta"))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return {component: total // batch for component, total in moved.items()}
