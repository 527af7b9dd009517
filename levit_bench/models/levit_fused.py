"""The LeViT as it runs: the graph the inference transform makes of a folded LeViT.

Training keeps tokens as (B, N, C) and every Linear as Linear+BatchNorm. For inference the
same arithmetic is laid out so that a runtime executes it with the fewest passes over memory:

- Tokens travel as one (B*N, C) matrix, so every Linear is one Gemm with no reshapes around it.
- A residual branch ends in a Gemm that adds the branch into the stream it came from
  (`torch.addmm(x, h, W)`: Gemm's C input), instead of a Gemm followed by an Add.
- The bias of such a Gemm is carried forward instead: the stream holds x + c for a known
  constant c, and every consumer of the stream is linear (a Linear, the subsampling of a
  shrinking attention, the mean before the head), so W (x + c) + b = W x + (W c + b) and c is
  folded into the consumers' biases (`carry_residual_biases`).
- 1/sqrt(D) is folded into the query weights; the attention bias is one constant
  (heads, Nq, Nk) added before the softmax over the last axis.
- The fused qkv Linear becomes three (q, k, v; its weights split at fuse time), so no Split
  copies their output apart: each is viewed per head and transposed once, K straight to K^T.

Some runtimes run only some forms of the same arithmetic well, so each layer that has a choice
takes a graph form (`exporters.fuse.graph_form`):
- `gemm-adds`, the default above (ONNX, TorchScript);
- `inductor`, for torch:compiled: a residual as `stream + linear(h)`. Inductor packs a Linear
  with constant weights for oneDNN and fuses the add into it as a post-op, but it sends an
  `addmm` whose C is an activation to aten, that is to MKL, whose sgemm runs its AVX2 kernel on
  AMD CPUs (half the FMA rate of AVX-512 where the cores have 512-bit units);
- `xnnpack`, the form ExecuTorch's XNNPACK partitioner delegates whole: a residual as
  `stream + linear(h)` (it delegates no `addmm` whose C is not a bias, and PT2E's XNNPACK
  quantizer annotates `linear`, not `mm`: `h @ W` stayed fp32 in int8), attention products as 3-D
  `bmm` (a 4-D matmul decomposes into `expand_copy`s it does not take), the subsampling as
  stride-1 slices of the grid viewed in pairs (it slices with stride 1 only; a pad to even
  length would not quantize), and the mean over tokens as a 4-D mean keeping its dimensions.

Module paths follow the training model's (`stages.1.blocks.0.attn.proj`; the qkv Linear's parts
are `attn.q`, `attn.k`, `attn.v`), so profiles and weight names read alike in both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FORMS = ("gemm-adds", "inductor", "xnnpack")


class Formed(nn.Module):
    """A layer with more than one graph form of the same arithmetic (`forms`, default the first)."""

    forms = FORMS
    form = FORMS[0]


class ResidualLinear(Formed):
    """x + h W^T: the last Linear of a residual branch, adding into the stream (no bias: carried)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.register_buffer("weight", linear.weight.detach().clone())  # (out, in), as the Linear's
        self.carried_bias = linear.bias.detach().clone()  # folded downstream by carry_residual_biases

    def forward(self, h: torch.Tensor, stream: torch.Tensor) -> torch.Tensor:
        if self.form == "gemm-adds":
            return torch.addmm(stream, h, self.weight.t())
        return stream + F.linear(h, self.weight)


def _bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b over (B, H, ., .) as one 3-D bmm (no broadcast, so no expand)."""
    batch, heads = a.shape[:2]
    return torch.bmm(a.reshape(batch * heads, *a.shape[2:]), b.reshape(batch * heads, *b.shape[2:])).view(
        batch, heads, a.shape[2], b.shape[3])


class Scores(Formed):
    """softmax(Q K^T + bias) with the scale already in Q: how much each query reads each key."""

    def __init__(self, bias: torch.Tensor):
        super().__init__()
        self.register_buffer("bias", bias.detach().clone())

    def forward(self, q: torch.Tensor, k_t: torch.Tensor) -> torch.Tensor:
        products = _bmm(q, k_t) if self.form == "xnnpack" else q @ k_t
        return (products + self.bias).softmax(dim=-1)


class Mix(Formed):
    """A V."""

    def forward(self, scores: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return _bmm(scores, v) if self.form == "xnnpack" else scores @ v


@torch.no_grad()
def _split_heads(linear: nn.Linear, heads: int, sizes: tuple[int, ...]) -> list[nn.Linear]:
    """A Linear whose outputs are grouped per head ([q k v] of head 0, of head 1, ...) as one
    Linear per part, each with its heads side by side: separate Gemms need no Split after."""
    weight = linear.weight.view(heads, sum(sizes), linear.in_features).split(sizes, dim=1)
    bias = linear.bias.view(heads, sum(sizes)).split(sizes, dim=1)
    parts = []
    for w, b in zip(weight, bias):
        part = nn.Linear(linear.in_features, w.shape[0] * w.shape[1])
        part.weight.copy_(w.reshape(-1, linear.in_features))
        part.bias.copy_(b.reshape(-1))
        parts.append(part.requires_grad_(False))
    return parts


@torch.no_grad()
def _scale(linear: nn.Linear, scale: float) -> None:
    linear.weight *= scale
    linear.bias *= scale


def _merge_heads(out: torch.Tensor, heads: int, value_dim: int) -> torch.Tensor:
    """(B, H, N, V) -> (B*N, H*V): each token's heads side by side, as the projection reads them."""
    return out.transpose(1, 2).reshape(-1, heads * value_dim)


class FusedAttention(nn.Module):
    """x + proj(hardswish(softmax(Q K^T + bias) V)) on (B*N, C) tokens."""

    def __init__(self, qkv: nn.Linear, proj: nn.Linear, bias: torch.Tensor, key_dim: int, value_dim: int,
                 tokens: int):
        super().__init__()
        self.num_heads, self.key_dim, self.value_dim, self.tokens = bias.shape[0], key_dim, value_dim, tokens
        self.q, self.k, self.v = _split_heads(qkv, self.num_heads, (key_dim, key_dim, value_dim))
        _scale(self.q, key_dim**-0.5)
        self.scores = Scores(bias)
        self.mix = Mix()
        self.proj = ResidualLinear(proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads = self.num_heads
        q = self.q(x).view(-1, self.tokens, heads, self.key_dim).transpose(1, 2)
        k_t = self.k(x).view(-1, self.tokens, heads, self.key_dim).permute(0, 2, 3, 1)
        v = self.v(x).view(-1, self.tokens, heads, self.value_dim).transpose(1, 2)
        out = _merge_heads(self.mix(self.scores(q, k_t), v), heads, self.value_dim)
        return self.proj(F.hardswish(out), x)


def _every_other(grid: torch.Tensor, dim: int) -> torch.Tensor:
    """Indices 0, 2, 4, ... of `dim` as stride-1 slices: the even-length part viewed in pairs, each
    pair's first, and an odd length's last row after them."""
    size = grid.shape[dim]
    even = grid.narrow(dim, 0, size - size % 2)
    pairs = even.reshape(*grid.shape[:dim], size // 2, 2, *grid.shape[dim + 1:]).narrow(dim + 1, 0, 1)
    taken = pairs.reshape(*grid.shape[:dim], size // 2, *grid.shape[dim + 1:])
    return torch.cat([taken, grid.narrow(dim, size - 1, 1)], dim=dim) if size % 2 else taken


def _subsample(grid: torch.Tensor, form: str) -> torch.Tensor:
    """(B, R, R, C) -> (B * ceil(R/2)^2, C): every other token of every other row."""
    if form == "xnnpack":
        return _every_other(_every_other(grid, 1), 2).reshape(-1, grid.shape[-1])
    return grid[:, ::2, ::2].reshape(-1, grid.shape[-1])


class FusedShrinkingAttention(Formed):
    """Keys and values from every token, queries from the stride-2 subsampled grid (one Slice)."""

    def __init__(self, kv: nn.Linear, q: nn.Linear, proj: nn.Linear, bias: torch.Tensor, key_dim: int,
                 value_dim: int, resolution: int, out_resolution: int):
        super().__init__()
        self.num_heads, self.key_dim, self.value_dim = bias.shape[0], key_dim, value_dim
        self.resolution, self.in_dim = resolution, q.in_features
        self.out_tokens = out_resolution**2
        self.k, self.v = _split_heads(kv, self.num_heads, (key_dim, value_dim))
        self.q = q
        _scale(self.q, key_dim**-0.5)
        self.scores = Scores(bias)
        self.mix = Mix()
        self.proj = proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res, heads, tokens = self.resolution, self.num_heads, self.resolution**2
        k_t = self.k(x).view(-1, tokens, heads, self.key_dim).permute(0, 2, 3, 1)
        v = self.v(x).view(-1, tokens, heads, self.value_dim).transpose(1, 2)
        subsampled = _subsample(x.view(-1, res, res, self.in_dim), self.form)
        q = self.q(subsampled).view(-1, self.out_tokens, heads, self.key_dim).transpose(1, 2)
        out = _merge_heads(self.mix(self.scores(q, k_t), v), heads, self.value_dim)
        return self.proj(F.hardswish(out))


class FusedMlp(nn.Module):
    """x + reduce(hardswish(expand(x)))."""

    def __init__(self, expand: nn.Linear, reduce: nn.Linear):
        super().__init__()
        self.expand = expand
        self.reduce = ResidualLinear(reduce)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduce(F.hardswish(self.expand(x)), x)


class FusedBlock(nn.Module):
    """Attention then MLP, each adding into the stream itself."""

    def __init__(self, attn: nn.Module, mlp: FusedMlp):
        super().__init__()
        self.attn, self.mlp = attn, mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attn(x))


class FusedLeViT(Formed):
    """Stem, stages on (B*N, C) tokens, mean over each image's tokens, one merged head."""

    def __init__(self, patch_conv: nn.Module, stages: nn.Sequential, head: nn.Linear, stem_dim: int,
                 out_dim: int, out_tokens: int):
        super().__init__()
        self.patch_conv, self.stages, self.head = patch_conv, stages, head
        self.stem_dim, self.out_dim, self.out_tokens = stem_dim, out_dim, out_tokens
        carry_residual_biases(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_conv(x).flatten(2).transpose(1, 2).reshape(-1, self.stem_dim)
        stream = self.stages(tokens).view(-1, self.out_tokens, self.out_dim)
        if self.form == "xnnpack":  # a global average pool over (B, C, N, 1)
            return self.head(stream.transpose(1, 2).unsqueeze(-1).mean(dim=(-2, -1), keepdim=True).flatten(1))
        return self.head(stream.mean(dim=1))


@torch.no_grad()
def _absorb(linear: nn.Linear, offset: torch.Tensor | None) -> None:
    """linear(x + offset) = linear(x) with offset folded into the bias."""
    if offset is not None:
        linear.bias += linear.weight @ offset


@torch.no_grad()
def carry_residual_biases(model: FusedLeViT) -> None:
    """Fold each residual branch's output bias into whatever reads the stream after it."""
    offset: torch.Tensor | None = None  # what the stream holds beyond the computed x
    for stage in model.stages:
        for block in ([stage.shrink] if stage.shrink is not None else []) + list(stage.blocks):
            for linear in (block.attn.q, block.attn.k, block.attn.v):  # the shrink's q reads a
                _absorb(linear, offset)  # subsampled stream: still x + offset, per channel
            if isinstance(block.attn, FusedShrinkingAttention):
                offset = None  # the projection starts a new stream, with its bias in place
            else:
                offset = _plus(offset, block.attn.proj.carried_bias)
            _absorb(block.mlp.expand, offset)
            offset = _plus(offset, block.mlp.reduce.carried_bias)
    _absorb(model.head, offset)  # mean(x + c) = mean(x) + c


def _plus(offset: torch.Tensor | None, bias: torch.Tensor) -> torch.Tensor:
    return bias.clone() if offset is None else offset + bias
