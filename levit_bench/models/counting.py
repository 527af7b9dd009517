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


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, resolution: int) -> int:
    """Multiply-adds of one eval-mode forward pass on a single (3, resolution, resolution) image."""
    if next(model.parameters()).device.type != "meta":
        model = copy.deepcopy(model).to("meta")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.empty(1, 3, resolution, resolution, device="meta"))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
