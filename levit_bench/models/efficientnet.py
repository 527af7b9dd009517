"""EfficientNet B0-B4 (Tan & Le 2019) at the resolutions the LeViT paper timed them.

One base table of seven stages, scaled per variant: widths by the width multiplier rounded to
multiples of 8 (never below 90% of the exact value), depths by the depth multiplier rounded
up. MBConv blocks with squeeze-excite (reduced to a quarter of the block's input channels),
SiLU, and stochastic depth growing linearly to 0.2 over the blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from levit_bench.models.components import ComponentRules, Rule
from levit_bench.models.layers import ConvNormAct
from levit_bench.models.mbconv import DepthwiseSeparable, InvertedResidual

# (block, repeats, kernel, stride, expansion, channels); every block has SE ratio 0.25
BASE_STAGES = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)
STEM_CHANNELS, HEAD_CHANNELS, SE_RATIO = 32, 1280, 0.25


@dataclass(frozen=True)
class EfficientNetConfig:
    width: float
    depth: float
    resolution: int
    dropout: float  # before the classifier
    drop_path: float = 0.2


EFFICIENTNET_CONFIGS = {
    "efficientnet_b0": EfficientNetConfig(1.0, 1.0, 224, 0.2),
    "efficientnet_b1": EfficientNetConfig(1.0, 1.1, 240, 0.2),
    "efficientnet_b2": EfficientNetConfig(1.1, 1.2, 260, 0.3),
    "efficientnet_b3": EfficientNetConfig(1.2, 1.4, 300, 0.3),
    "efficientnet_b4": EfficientNetConfig(1.4, 1.8, 380, 0.4),
}


def round_channels(channels: float, divisor: int = 8) -> int:
    """The nearest multiple of `divisor`, bumped up if that loses more than 10%."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


def stage_plan(config: EfficientNetConfig) -> list[tuple[str, int, int, int, int, int]]:
    """The scaled stages: (block, repeats, kernel, stride, expansion, channels)."""
    return [
        (block, math.ceil(repeats * config.depth), kernel, stride, expansion, round_channels(channels * config.width))
        for block, repeats, kernel, stride, expansion, channels in BASE_STAGES
    ]


# Where an EfficientNet's time goes: by module path, first match wins.
COMPONENTS = ComponentRules((
    Rule(r"^stem", "stem"),
    Rule(r"\.se(\.|$)", "mbconv.se"),
    Rule(r"\.dw(\.|$)", "mbconv.dw"),
    Rule(r"\.(expand|project)(\.|$)", "mbconv.pw"),
    Rule(r"^stages\.\d+\.\d+$", "residual", frozenset({"Add", "aten::add"})),
    Rule(r"^(head_conv|classifier|dropout|)$|^head_conv\.", "head"),  # the 1x1 head, pooling, classifier
))


class EfficientNet(nn.Module):
    def __init__(self, config: EfficientNetConfig, num_classes: int = 1000, drop_path: float | None = None):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.config = config
        self.num_classes = num_classes
        plan = stage_plan(config)
        total = sum(stage[1] for stage in plan)
        p = config.drop_path if drop_path is None else drop_path
        channels = round_channels(STEM_CHANNELS * config.width)
        self.stem = ConvNormAct(3, channels, 3, stride=2)
        stages, index = [], 0
        for block, repeats, kernel, stride, expansion, out_channels in plan:
            blocks = []
            for i in range(repeats):
                rate = p * index / total
                se = max(1, int(channels * SE_RATIO))
                s = stride if i == 0 else 1
                if block == "ds":
                    blocks.append(DepthwiseSeparable(channels, out_channels, kernel, s, se, rate))
                else:
                    blocks.append(InvertedResidual(channels, out_channels, channels * expansion, kernel, s, se, rate))
                channels, index = out_channels, index + 1
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = round_channels(HEAD_CHANNELS * config.width)
        self.head_conv = ConvNormAct(channels, self.num_features)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(self.num_features, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.uniform_(module.weight, -1 / math.sqrt(module.in_features), 1 / math.sqrt(module.in_features))
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # adaptive pooling rather than mean(): timm's pooling op, so timm weights give timm's logits bit for bit
        return nn.functional.adaptive_avg_pool2d(self.head_conv(self.stages(self.stem(x))), 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.forward_features(x)))


def build_efficientnet(name: str, num_classes: int = 1000, drop_path: float | None = None) -> EfficientNet:
    return EfficientNet(EFFICIENTNET_CONFIGS[name], num_classes=num_classes, drop_path=drop_path)
