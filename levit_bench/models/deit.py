"""DeiT-Tiny and DeiT-Small with the distillation token (Touvron et al. 2021), as the LeViT
paper compares them: 16x16 patches at 224, a class and a distillation token, 12 pre-norm
transformer blocks, a head on each token; eval output is the mean of the two heads.

Parameter names follow timm's (`cls_token`, `dist_token`, `pos_embed`, `patch_embed.proj`,
`blocks.i.attn.qkv`, `head_dist`, ...), which are also the official DeiT release's, so those
checkpoints need no renaming.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from levit_bench.models.components import ComponentRules, Rule
from levit_bench.models.transformer import TransformerBlock


@dataclass(frozen=True)
class DeiTConfig:
    embed_dim: int
    num_heads: int
    depth: int = 12
    mlp_ratio: int = 4
    patch_size: int = 16
    img_size: int = 224
    drop_path: float = 0.1  # DeiT's training default


DEIT_CONFIGS = {
    "deit_tiny": DeiTConfig(embed_dim=192, num_heads=3),
    "deit_small": DeiTConfig(embed_dim=384, num_heads=6),
}


class PatchEmbed(nn.Module):
    def __init__(self, config: DeiTConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, config.embed_dim, config.patch_size, config.patch_size)
        self.num_patches = (config.img_size // config.patch_size) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        return x.reshape(-1, x.shape[1], self.num_patches).transpose(1, 2)


# Where a DeiT's time goes: by module path, first match wins.
COMPONENTS = ComponentRules((
    Rule(r"^patch_embed", "patch"),
    Rule(r"^$", "patch", frozenset({"Concat", "Expand", "Add", "aten::cat", "aten::expand", "aten::add"})),  # tokens
    Rule(r"\.(norm1|attn)(\.|$)", "attention"),
    Rule(r"\.(norm2|mlp)(\.|$)", "mlp"),
    Rule(r"^blocks\.\d+$", "residual", frozenset({"Add", "aten::add"})),
    Rule(r"^(norm|head|)$", "head"),
))


class DeiT(nn.Module):
    """In training mode returns (class-token logits, distillation-token logits); in eval mode their mean."""

    def __init__(self, config: DeiTConfig, num_classes: int = 1000, drop_path: float | None = None):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.config = config
        self.num_classes = num_classes
        dim = config.embed_dim
        p = config.drop_path if drop_path is None else drop_path
        self.patch_embed = PatchEmbed(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 2, dim))
        rates = [p * i / (config.depth - 1) for i in range(config.depth)]  # stochastic depth grows with depth
        self.blocks = nn.Sequential(*[
            TransformerBlock(dim, config.num_heads, dim * config.mlp_ratio, nn.GELU, 1e-6, rate) for rate in rates
        ])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        self.head_dist: nn.Linear | None = nn.Linear(dim, num_classes)
        for parameter in (self.cls_token, self.dist_token, self.pos_embed):
            nn.init.trunc_normal_(parameter, std=0.02, a=-0.04, b=0.04)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02, a=-0.04, b=0.04)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> the normalised (cls, dist) token pair, (B, 2, C)."""
        x = self.patch_embed(x)
        prefix = torch.cat([self.cls_token, self.dist_token], dim=1).expand(x.shape[0], -1, -1)
        x = torch.cat([prefix, x], dim=1) + self.pos_embed
        return self.norm(self.blocks(x))[:, :2]

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        tokens = self.forward_features(x)
        if self.head_dist is None:  # fused: one Linear over both tokens, already the mean
            return self.head(tokens.reshape(-1, 2 * self.config.embed_dim))
        logits, logits_dist = self.head(tokens[:, 0]), self.head_dist(tokens[:, 1])
        if self.training:
            return logits, logits_dist
        return (logits + logits_dist) / 2

    @torch.no_grad()
    def fuse(self) -> "DeiT":
        """The two heads as one Linear on the concatenated tokens: [W_cls, W_dist] / 2."""
        if self.head_dist is not None:
            head, dist = self.head, self.head_dist
            merged = nn.Linear(2 * head.in_features, head.out_features)
            merged.weight.copy_(torch.cat([head.weight, dist.weight], dim=1) / 2)
            merged.bias.copy_((head.bias + dist.bias) / 2)
            self.head, self.head_dist = merged, None
        return self


def build_deit(name: str, num_classes: int = 1000, drop_path: float | None = None) -> DeiT:
    return DeiT(DEIT_CONFIGS[name], num_classes=num_classes, drop_path=drop_path)
