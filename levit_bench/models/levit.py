"""The LeViT family (Graham et al. 2021, Table 2 and Section 4).

A model is a row of `LEVIT_CONFIGS` plus `build_levit`. Tokens travel as (B, N, C), N = H*W
in row-major order; every Linear is followed by a BatchNorm over all B*N tokens, so it is a
1x1 convolution in disguise and folds like one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from levit_bench.models.components import LAYOUT, ComponentRules, Rule
from levit_bench.models.layers import ConvNorm, DropPath, LinearNorm, NormLinear
from levit_bench.models.levit_fused import (
    FusedAttention, FusedBlock, FusedLeViT, FusedMlp, FusedShrinkingAttention,
)


@dataclass(frozen=True)
class LeViTConfig:
    embed_dims: tuple[int, int, int]  # C per stage
    key_dim: int  # D: the size of Q and K per head
    num_heads: tuple[int, int, int]  # N per stage
    depths: tuple[int, int, int]  # attention+MLP pairs per stage
    drop_path: float = 0.0  # p in Table 2, on every residual branch
    attn_ratio: int = 2  # V has attn_ratio * D channels per head
    mlp_ratio: int = 2
    shrink_attn_ratio: int = 4  # V of 4D in the shrinking attention (no residual there)
    shrink_mlp_ratio: int = 2
    img_size: int = 224


LEVIT_CONFIGS: dict[str, LeViTConfig] = {
    "levit_128s": LeViTConfig((128, 256, 384), 16, (4, 6, 8), (2, 3, 4)),
    "levit_128": LeViTConfig((128, 256, 384), 16, (4, 8, 12), (4, 4, 4)),
    "levit_192": LeViTConfig((192, 288, 384), 32, (3, 5, 6), (4, 4, 4)),
    "levit_256": LeViTConfig((256, 384, 512), 32, (4, 6, 8), (4, 4, 4)),
    "levit_384": LeViTConfig((384, 512, 768), 32, (6, 9, 12), (4, 4, 4), drop_path=0.1),
}

STEM_STRIDE = 16  # four stride-2 convolutions

# Where a LeViT's time goes (Section 4 of the paper): by module path, first match wins.
COMPONENTS = ComponentRules((
    Rule(r"^patch_conv", "stem"),
    Rule(r"", LAYOUT, frozenset({LAYOUT})),  # reshapes, transposes, splits, copies: wherever they are
    Rule(r"\.shrink\.attn", "shrink"),
    Rule(r"\.attn\.(qkv|q|k|v)$", "attention.qkv"),  # one fused Linear in training, three for inference
    Rule(r"\.attn\.(scores|attention_bias)", "attention.scores"),  # Q K^T, scale, bias, softmax
    Rule(r"\.attn\.mix", "attention.mix"),  # A V
    Rule(r"\.attn(\.proj)?$", "attention.proj"),  # the Hardswish and the projection after the mix
    Rule(r"\.mlp", "mlp"),
    Rule(r"\.(blocks\.\d+|shrink)$", "residual", frozenset({"Add", "aten::add"})),  # x + f(x)
    Rule(r"^(head|)$", "head"),  # the pooling and the classifier
))


def _relative_offsets(q_res: int, k_res: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """|row| and |column| offsets between each query and each key: two (Nq, Nk) index maps.

    Queries sit on the key grid subsampled by `stride` (stride 1: the same grid).
    """
    q_rows = torch.arange(q_res).repeat_interleave(q_res) * stride
    q_cols = torch.arange(q_res).repeat(q_res) * stride
    k_rows = torch.arange(k_res).repeat_interleave(k_res)
    k_cols = torch.arange(k_res).repeat(k_res)
    return (q_rows[:, None] - k_rows[None, :]).abs(), (q_cols[:, None] - k_cols[None, :]).abs()


class AttentionBias(nn.Module):
    """The learnt translation-invariant bias B[h, |dy|, |dx|] added to the attention logits."""

    def __init__(self, num_heads: int, q_res: int, k_res: int, stride: int = 1):
        super().__init__()
        self.table = nn.Parameter(torch.zeros(num_heads, k_res, k_res))
        rows, cols = _relative_offsets(q_res, k_res, stride)
        self.register_buffer("row_offsets", rows, persistent=False)
        self.register_buffer("col_offsets", cols, persistent=False)

    def forward(self) -> torch.Tensor:
        """The (heads, Nq, Nk) bias."""
        return self.table[:, self.row_offsets, self.col_offsets]


class AttentionScores(nn.Module):
    """softmax(Q K^T / sqrt(D) + bias): how much each query reads each key. A module of its own
    (no weights) so that a profile can tell it from the mixing that follows."""

    def __init__(self, key_dim: int):
        super().__init__()
        self.scale = key_dim**-0.5

    def forward(self, q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return ((q @ k.transpose(-2, -1)) * self.scale + bias).softmax(dim=-1)


class AttentionMix(nn.Module):
    """The scores applied to the values: A V."""

    def forward(self, scores: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return scores @ v


class Attention(nn.Module):
    """Multi-head attention with small keys (D), values of attn_ratio*D and Hardswish before
    the output projection; one fused qkv projection whose channels are grouped per head."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: int, resolution: int):
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = attn_ratio * key_dim
        self.tokens = resolution * resolution
        self.qkv = LinearNorm(dim, num_heads * (2 * key_dim + self.value_dim))
        self.scores = AttentionScores(key_dim)
        self.mix = AttentionMix()
        self.proj = LinearNorm(num_heads * self.value_dim, dim, bn_weight_init=0.0)
        self.attention_bias = AttentionBias(num_heads, resolution, resolution)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Only the batch axis is left to -1, so an export with a symbolic batch has constant
        # shapes everywhere else and needs no shape arithmetic.
        qkv = self.qkv(x).view(-1, self.tokens, self.num_heads, 2 * self.key_dim + self.value_dim)
        q, k, v = (t.transpose(1, 2) for t in qkv.split([self.key_dim, self.key_dim, self.value_dim], dim=3))
        scores = self.scores(q, k, self.attention_bias())
        out = self.mix(scores, v).transpose(1, 2).reshape(-1, self.tokens, self.num_heads * self.value_dim)
        return self.proj(F.hardswish(out))

    def fuse(self) -> FusedAttention:
        """Called with qkv and proj already folded into Linears; the bias table is looked up here, once."""
        return FusedAttention(self.qkv, self.proj, self.attention_bias(), self.key_dim, self.value_dim, self.tokens)


class ShrinkingAttention(nn.Module):
    """Attention whose queries come from the stride-2 subsampled grid: (C, H, W) -> (C', H/2, W/2).

    No residual around it, so it has C/D heads and values of 4D to keep the information.
    """

    def __init__(
        self, in_dim: int, out_dim: int, key_dim: int, num_heads: int, attn_ratio: int, resolution: int
    ):
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = attn_ratio * key_dim
        self.scale = key_dim**-0.5
        self.in_dim = in_dim
        self.resolution = resolution
        self.out_resolution = (resolution - 1) // 2 + 1
        self.kv = LinearNorm(in_dim, num_heads * (key_dim + self.value_dim))
        self.q = LinearNorm(in_dim, num_heads * key_dim)
        self.proj = LinearNorm(num_heads * self.value_dim, out_dim)
        self.attention_bias = AttentionBias(num_heads, self.out_resolution, resolution, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res, out_tokens = self.resolution, self.out_resolution**2
        kv = self.kv(x).view(-1, res * res, self.num_heads, self.key_dim + self.value_dim)
        k, v = (t.transpose(1, 2) for t in kv.split([self.key_dim, self.value_dim], dim=3))
        subsampled = x.view(-1, res, res, self.in_dim)[:, ::2, ::2].reshape(-1, out_tokens, self.in_dim)
        q = self.q(subsampled).view(-1, out_tokens, self.num_heads, self.key_dim).transpose(1, 2)
        logits = (q @ k.transpose(-2, -1)) * self.scale + self.attention_bias()
        out = (logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(-1, out_tokens, self.num_heads * self.value_dim)
        return self.proj(F.hardswish(out))

    def fuse(self) -> FusedShrinkingAttention:
        return FusedShrinkingAttention(
            self.kv, self.q, self.proj, self.attention_bias(), self.key_dim, self.value_dim, self.resolution,
            self.out_resolution,
        )


class Mlp(nn.Module):
    """Linear+BN, Hardswish, Linear+BN: a pair of 1x1 convolutions with a small expansion."""

    def __init__(self, dim: int, ratio: int):
        super().__init__()
        self.expand = LinearNorm(dim, dim * ratio)
        self.reduce = LinearNorm(dim * ratio, dim, bn_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduce(F.hardswish(self.expand(x)))

    def fuse(self) -> FusedMlp:
        """The MLP with its residual add inside (it is residual wherever LeViT uses it)."""
        return FusedMlp(self.expand, self.reduce)


class Block(nn.Module):
    """A residual attention block followed by a residual MLP block."""

    def __init__(self, dim: int, config: LeViTConfig, num_heads: int, resolution: int, drop_path: float):
        super().__init__()
        self.attn = Attention(dim, config.key_dim, num_heads, config.attn_ratio, resolution)
        self.mlp = Mlp(dim, config.mlp_ratio)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(x))
        return x + self.drop_path(self.mlp(x))

    def fuse(self) -> FusedBlock:
        return FusedBlock(self.attn, self.mlp)


class ShrinkBlock(nn.Module):
    """Shrinking attention between two stages, then a residual MLP at the new resolution."""

    def __init__(self, in_dim: int, out_dim: int, config: LeViTConfig, resolution: int, drop_path: float):
        super().__init__()
        self.attn = ShrinkingAttention(
            in_dim, out_dim, config.key_dim, in_dim // config.key_dim, config.shrink_attn_ratio, resolution
        )
        self.mlp = Mlp(out_dim, config.shrink_mlp_ratio)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(x)
        return x + self.drop_path(self.mlp(x))

    def fuse(self) -> FusedBlock:
        return FusedBlock(self.attn, self.mlp)


class Stage(nn.Module):
    def __init__(self, shrink: ShrinkBlock | None, blocks: list[Block]):
        super().__init__()
        self.shrink = shrink
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shrink is not None:
            x = self.shrink(x)
        return self.blocks(x)


def patch_conv(out_dim: int) -> nn.Sequential:
    """PatchConv: four 3x3 stride-2 Conv+BN, 3 -> C/8 -> C/4 -> C/2 -> C, Hardswish between."""
    widths = [3, out_dim // 8, out_dim // 4, out_dim // 2, out_dim]
    layers: list[nn.Module] = []
    for i, (cin, cout) in enumerate(zip(widths, widths[1:])):
        if i:
            layers.append(nn.Hardswish())
        layers.append(ConvNorm(cin, cout, kernel_size=3, stride=2, padding=1))
    return nn.Sequential(*layers)


class LeViT(nn.Module):
    """In training mode returns (class logits, distillation logits); in eval mode their mean."""

    def __init__(self, config: LeViTConfig, num_classes: int = 1000, drop_path: float | None = None):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.config = config
        self.num_classes = num_classes
        p = config.drop_path if drop_path is None else drop_path
        dims, heads = config.embed_dims, config.num_heads

        self.patch_conv = patch_conv(dims[0])
        resolution = config.img_size // STEM_STRIDE
        self.stem_tokens = resolution * resolution
        stages = []
        for i, depth in enumerate(config.depths):
            shrink = None
            if i > 0:
                shrink = ShrinkBlock(dims[i - 1], dims[i], config, resolution, p)
                resolution = shrink.attn.out_resolution
            blocks = [Block(dims[i], config, heads[i], resolution, p) for _ in range(depth)]
            stages.append(Stage(shrink, blocks))
        self.stages = nn.Sequential(*stages)
        self.head: nn.Module = NormLinear(dims[-1], num_classes)
        self.head_dist: nn.Module = NormLinear(dims[-1], num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) -> pooled embedding (B, C)."""
        x = self.patch_conv(x).reshape(-1, self.config.embed_dims[0], self.stem_tokens).transpose(1, 2)
        return self.stages(x).mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        features = self.forward_features(x)
        logits, logits_dist = self.head(features), self.head_dist(features)
        if self.training:
            return logits, logits_dist
        return (logits + logits_dist) / 2

    @torch.no_grad()
    def fuse(self) -> FusedLeViT:
        """The inference graph (`levit_fused`), the two heads (each already folded into a
        Linear) merged into their average."""
        head = nn.Linear(self.head.in_features, self.head.out_features)
        head.weight.copy_((self.head.weight + self.head_dist.weight) / 2)
        head.bias.copy_((self.head.bias + self.head_dist.bias) / 2)
        last = self.stages[-1].blocks[0].attn
        return FusedLeViT(self.patch_conv, self.stages, head, self.config.embed_dims[0],
                          self.config.embed_dims[-1], last.tokens)


def build_levit(name: str, num_classes: int = 1000, drop_path: float | None = None) -> LeViT:
    """Build a randomly initialised LeViT variant from `LEVIT_CONFIGS`."""
    return LeViT(LEVIT_CONFIGS[name], num_classes=num_classes, drop_path=drop_path)
