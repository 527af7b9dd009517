"""Small named layers shared by the model families.

Each Conv/Linear that feeds a BatchNorm (or is fed by one) is one module, so the inference
transform can fold the pair into a single layer without knowing the architecture around it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval


class ConvNorm(nn.Module):
    """A bias-free Conv2d followed by BatchNorm2d (padding defaults to "same" for odd kernels)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        bn_weight_init: float = 1.0,
    ):
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels)
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))

    def fuse(self) -> nn.Conv2d:
        """One Conv2d with the BatchNorm's statistics folded into its weight and bias."""
        return fuse_conv_bn_eval(self.conv.eval(), self.bn.eval())


class ConvNormAct(ConvNorm):
    """ConvNorm followed by an activation (SiLU unless told otherwise)."""

    def __init__(self, *args, act: type[nn.Module] = nn.SiLU, **kwargs):
        super().__init__(*args, **kwargs)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def fuse(self) -> nn.Sequential:
        return nn.Sequential(super().fuse(), self.act)


class LinearNorm(nn.Module):
    """A bias-free Linear on (B, N, C) tokens followed by a BatchNorm over all B*N tokens."""

    def __init__(self, in_features: int, out_features: int, bn_weight_init: float = 1.0):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)
        self.bn = nn.BatchNorm1d(out_features)
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        return self.bn(y.flatten(0, 1)).reshape_as(y)

    def fuse(self) -> nn.Linear:
        """One Linear: the BN normalises each output channel, whichever token it belongs to."""
        return fuse_linear_bn_eval(self.linear.eval(), self.bn.eval())


class NormLinear(nn.Module):
    """BatchNorm1d followed by a Linear: the classification heads."""

    def __init__(self, in_features: int, out_features: int, std: float = 0.02):
        super().__init__()
        self.bn = nn.BatchNorm1d(in_features)
        self.linear = nn.Linear(in_features, out_features)
        nn.init.trunc_normal_(self.linear.weight, std=std, a=-2 * std, b=2 * std)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.bn(x))

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        """One Linear. torch's fusion helpers only fold a BN that follows a layer; this one
        precedes it: W' = W diag(s), b' = b + W (beta - mean s), s = gamma / sqrt(var + eps)."""
        bn, linear = self.bn, self.linear
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        fused = nn.Linear(linear.in_features, linear.out_features)
        fused.weight.copy_(linear.weight * scale[None, :])
        fused.bias.copy_(linear.bias + linear.weight @ shift)
        return fused


class DropPath(nn.Module):
    """Stochastic depth: zero a residual branch for a random subset of samples in training.

    Kept samples are scaled by 1/(1-p) so the expectation matches eval mode, where this is
    the identity; folded for inference it disappears.
    """

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        keep = torch.rand(shape, device=x.device, dtype=x.dtype) >= self.p
        return x * keep.to(x.dtype) / (1.0 - self.p)

    def fuse(self) -> nn.Identity:
        return nn.Identity()

    def extra_repr(self) -> str:
        return f"p={self.p}"
