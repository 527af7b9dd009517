"""MobileViT-XXS, XS and S (Mehta & Rastegari, ICLR 2022) at 256x256.

A stride-2 stem, MobileNetV2 inverted residuals, and in the last three stages a MobileViT
block: a local 3x3 conv, a 1x1 projection to the transformer width, the feature map unfolded
into 2x2 patches (attention runs across patches, once per pixel position inside a patch),
folded back, projected to the stage width, concatenated with the block's input and fused by
a 3x3 conv.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from levit_bench.models.components import LAYOUT, ComponentRules, Rule
from levit_bench.models.layers import ConvNormAct
from levit_bench.models.mbconv import InvertedResidual
from levit_bench.models.transformer import TransformerBlock


@dataclass(frozen=True)
class MobileViTConfig:
    channels: tuple[int, int, int, int, int]  # output channels of the five stages
    expansion: int  # inverted-residual expansion
    dims: tuple[int, int, int]  # transformer width in stages 2, 3, 4
    num_features: int  # the final 1x1 conv
    depths: tuple[int, int, int] = (2, 4, 3)  # transformer blocks in stages 2, 3, 4
    stem_channels: int = 16
    resolution: int = 256
    patch: int = 2
    num_heads: int = 4
    mlp_ratio: int = 2


MOBILEVIT_CONFIGS = {
    "mobilevit_xxs": MobileViTConfig((16, 24, 48, 64, 80), 2, (64, 80, 96), 320),
    "mobilevit_xs": MobileViTConfig((32, 48, 64, 80, 96), 4, (96, 120, 144), 384),
    "mobilevit_s": MobileViTConfig((32, 64, 96, 128, 160), 4, (144, 192, 240), 640),
}


# Where a MobileViT's time goes: by module path, first match wins. `local` (the convolutions
# around each transformer) is not in the paper's vocabulary; without it they would be `other`.
COMPONENTS = ComponentRules((
    Rule(r"\.transformer\.|\.norm$", "transformer"),
    Rule(r"", "unfold_fold", frozenset({LAYOUT})),  # patches to sequences and back, the concat before fusion
    Rule(r"\.(local|to_tokens|to_channels|fusion)(\.|$)", "local"),
    Rule(r"^(head_conv|classifier|)$|^head_conv\.", "head"),
    Rule(r"^(stem|stages)", "mv2"),
))


class MobileViTBlock(nn.Module):
    def __init__(self, channels: int, dim: int, depth: int, config: MobileViTConfig, resolution: int):
        super().__init__()
        self.dim, self.patch = dim, config.patch
        self.grid = resolution // config.patch  # patches per side
        self.local = ConvNormAct(channels, channels, 3)
        self.to_tokens = nn.Conv2d(channels, dim, 1, bias=False)
        self.transformer = nn.Sequential(*[
            TransformerBlock(dim, config.num_heads, dim * config.mlp_ratio, nn.SiLU, 1e-5) for _ in range(depth)
        ])
        self.norm = nn.LayerNorm(dim, eps=1e-5)
        self.to_channels = ConvNormAct(dim, channels, 1)
        self.fusion = ConvNormAct(2 * channels, channels, 3)

    def unfold(self, x: torch.Tensor) -> torch.Tensor:
        """(B, d, H, W) -> (B * p * p, patches, d): one sequence per pixel position in a patch."""
        g, p, d = self.grid, self.patch, self.dim
        x = x.reshape(-1, d, g, p, g, p).permute(0, 3, 5, 2, 4, 1)
        return x.reshape(-1, g * g, d)

    def fold(self, x: torch.Tensor) -> torch.Tensor:
        g, p, d = self.grid, self.patch, self.dim
        x = x.reshape(-1, p, p, g, g, d).permute(0, 5, 3, 1, 4, 2)
        return x.reshape(-1, d, g * p, g * p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.unfold(self.to_tokens(self.local(x)))
        y = self.to_channels(self.fold(self.norm(self.transformer(tokens))))
        return self.fusion(torch.cat([x, y], dim=1))


class MobileViT(nn.Module):
    def __init__(self, config: MobileViTConfig, num_classes: int = 1000, drop_path: float | None = None):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.config = config
        self.num_classes = num_classes
        p = drop_path or 0.0
        c, e = config.channels, config.expansion
        self.stem = ConvNormAct(3, config.stem_channels, 3, stride=2)
        resolution = config.resolution // 2
        stages = [
            nn.Sequential(InvertedResidual(config.stem_channels, c[0], config.stem_channels * e, 3, 1, drop_path=p)),
            nn.Sequential(*[InvertedResidual(a, c[1], a * e, 3, s, drop_path=p)
                            for a, s in ((c[0], 2), (c[1], 1), (c[1], 1))]),
        ]
        resolution //= 2
        for i, (dim, depth) in enumerate(zip(config.dims, config.depths)):
            resolution //= 2
            stages.append(nn.Sequential(
                InvertedResidual(c[i + 1], c[i + 2], c[i + 1] * e, 3, 2, drop_path=p),
                MobileViTBlock(c[i + 2], dim, depth, config, resolution),
            ))
        self.stages = nn.Sequential(*stages)
        self.head_conv = ConvNormAct(c[-1], config.num_features)
        self.classifier = nn.Linear(config.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(self.head_conv(self.stages(self.stem(x))), 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))


def build_mobilevit(name: str, num_classes: int = 1000, drop_path: float | None = None) -> MobileViT:
    return MobileViT(MOBILEVIT_CONFIGS[name], num_classes=num_classes, drop_path=drop_path)
