"""Mobile inverted-bottleneck blocks (MobileNetV2 / EfficientNet / MobileViT)."""

from __future__ import annotations

import torch
from torch import nn

from levit_bench.models.layers import ConvNorm, ConvNormAct, DropPath


class SqueezeExcite(nn.Module):
    """Channel gate: global mean -> 1x1 reduce -> SiLU -> 1x1 expand -> sigmoid -> scale."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = x.mean(dim=(2, 3), keepdim=True)
        gate = self.expand(nn.functional.silu(self.reduce(gate)))
        return x * torch.sigmoid(gate)


class DepthwiseSeparable(nn.Module):
    """Depthwise kxk (+BN+SiLU), optional squeeze-excite, pointwise projection (+BN)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int,
                 se_reduced: int | None = None, drop_path: float = 0.0):
        super().__init__()
        self.dw = ConvNormAct(in_channels, in_channels, kernel, stride, groups=in_channels)
        self.se = SqueezeExcite(in_channels, se_reduced) if se_reduced else nn.Identity()
        self.project = ConvNorm(in_channels, out_channels)
        self.residual = stride == 1 and in_channels == out_channels
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.dw(x)))
        return x + self.drop_path(y) if self.residual else y


class InvertedResidual(nn.Module):
    """1x1 expansion (+BN+SiLU), depthwise kxk (+BN+SiLU), optional SE, 1x1 projection (+BN)."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int, kernel: int, stride: int,
                 se_reduced: int | None = None, drop_path: float = 0.0):
        super().__init__()
        self.expand = ConvNormAct(in_channels, mid_channels)
        self.dw = ConvNormAct(mid_channels, mid_channels, kernel, stride, groups=mid_channels)
        self.se = SqueezeExcite(mid_channels, se_reduced) if se_reduced else nn.Identity()
        self.project = ConvNorm(mid_channels, out_channels)
        self.residual = stride == 1 and in_channels == out_channels
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + self.drop_path(y) if self.residual else y
