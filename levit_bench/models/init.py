"""A random init shaped like a trained network, for measuring speed without a checkpoint.

A freshly built network has symmetries no trained one has: residual BatchNorms with weight 0
(LeViT), zero biases and zero attention-bias tables, BatchNorm statistics of exactly 0 and 1.
Graph optimisers can exploit them (onnxsim drops an Add of zeros; a runtime may skip a
product with an all-zero weight), so speed measured on them need not be the speed of the
trained network. This perturbs every parameter or statistic that is one constant value.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def representative_init(model: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if not tensor.is_floating_point() or tensor.numel() < 2:
            continue
        flat = tensor.flatten()
        if not bool((flat == flat[0]).all()):
            continue  # already random
        noise = torch.randn(tensor.shape, generator=generator)
        if name.endswith("running_var"):
            tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
        elif name.endswith("running_mean"):
            tensor.copy_(0.1 * noise)
        elif flat[0] == 0:  # zero weights (residual BNs), biases, bias tables
            tensor.copy_(0.1 * noise)
        else:  # ones: BN and LayerNorm scales
            tensor.add_(0.1 * noise)
    return model
