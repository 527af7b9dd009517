"""Test support: foreign LeViT checkpoint layouts and an independent reference forward pass.

The layouts are built here by renaming keys, written out from the key names of the official
release (`patch_embed.0.c.weight`, `blocks.<flat index>.m.qkv.c.weight`, ...) and timm's
(`stem.conv1.linear.weight`, `stages.<i>.blocks.<j>.attn.qkv.linear.weight`, ...), without
using levit_bench's own converters. `official_logits` evaluates a network from an
official-layout state dict with nothing but functional ops, following the paper's equations,
so it checks the model code and the converters at once.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from levit_bench.models.levit import LeViTConfig

BN_LEAVES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every weight, BN statistic and attention bias a non-trivial random value.

    At initialisation the residual BNs are zero and the biases are zero, which would hide
    most mistakes in a round trip.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in itertools.chain(model.named_parameters(), model.named_buffers()):
            if not t.is_floating_point():
                continue
            if name.endswith(("bn.weight", "norm.weight", "norm1.weight", "norm2.weight")):
                t.copy_(1 + 0.2 * torch.randn(t.shape, generator=g))
            elif name.endswith(("bn.bias", "running_mean", "norm.bias", "norm1.bias", "norm2.bias")):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith("table"):
                t.copy_(torch.randn(t.shape, generator=g))
            else:
                fan_in = t[0].numel() if t.dim() > 1 else t.numel()
                t.copy_(torch.randn(t.shape, generator=g) / fan_in**0.5)
    return model


def _official_units(config: LeViTConfig):
    """(official module, native module, kind) in the official flat order."""
    index = 0
    for stage, depth in enumerate(config.depths):
        if stage > 0:
            yield f"blocks.{index}", f"stages.{stage}.shrink.attn", "shrink"
            yield f"blocks.{index + 1}.m", f"stages.{stage}.shrink.mlp", "mlp"
            index += 2
        for j in range(depth):
            yield f"blocks.{index}.m", f"stages.{stage}.blocks.{j}.attn", "attn"
            yield f"blocks.{index + 1}.m", f"stages.{stage}.blocks.{j}.mlp", "mlp"
            index += 2


def _official_bias_index(q_res: int, k_res: int, stride: int) -> torch.Tensor:
    """The official (Nq, Nk) index buffer: offsets numbered in order of first appearance."""
    offsets: dict[tuple[int, int], int] = {}
    idxs = []
    for qy, qx in itertools.product(range(q_res), range(q_res)):
        for ky, kx in itertools.product(range(k_res), range(k_res)):
            off = (abs(qy * stride - ky), abs(qx * stride - kx))
            idxs.append(offsets.setdefault(off, len(offsets)))
    return torch.tensor(idxs).view(q_res * q_res, k_res * k_res)


def native_to_official(sd: dict[str, torch.Tensor], config: LeViTConfig) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}

    def pair(dst: str, src: str, linear: str = "linear") -> None:
        out[f"{dst}.c.weight"] = sd[f"{src}.{linear}.weight"]
        for leaf in BN_LEAVES:
            out[f"{dst}.bn.{leaf}"] = sd[f"{src}.bn.{leaf}"]

    for i in (0, 2, 4, 6):
        pair(f"patch_embed.{i}", f"patch_conv.{i}", linear="conv")
    resolution = config.img_size // 16
    for official, native, kind in _official_units(config):
        if kind == "mlp":
            pair(f"{official}.0", f"{native}.expand")
            pair(f"{official}.2", f"{native}.reduce")
            continue
        table = sd[f"{native}.attention_bias.table"]
        out[f"{official}.attention_biases"] = table.reshape(table.shape[0], -1)
        if kind == "attn":
            pair(f"{official}.qkv", f"{native}.qkv")
            out[f"{official}.attention_bias_idxs"] = _official_bias_index(resolution, resolution, 1)
        else:
            pair(f"{official}.kv", f"{native}.kv")
            pair(f"{official}.q.1", f"{native}.q")
            q_res = (resolution - 1) // 2 + 1
            out[f"{official}.attention_bias_idxs"] = _official_bias_index(q_res, resolution, 2)
            resolution = q_res
        pair(f"{official}.proj.1", f"{native}.proj")
    for head in ("head", "head_dist"):
        for leaf in BN_LEAVES:
            out[f"{head}.bn.{leaf}"] = sd[f"{head}.bn.{leaf}"]
        out[f"{head}.l.weight"] = sd[f"{head}.linear.weight"]
        out[f"{head}.l.bias"] = sd[f"{head}.linear.bias"]
    return out


def official_to_timm(sd: dict[str, torch.Tensor], config: LeViTConfig) -> dict[str, torch.Tensor]:
    """timm's layout, from the official one (timm's own converter pairs keys the same way)."""
    out: dict[str, torch.Tensor] = {}

    def pair(dst: str, src: str) -> None:
        out[f"{dst}.linear.weight"] = sd[f"{src}.c.weight"]
        for leaf in BN_LEAVES:
            out[f"{dst}.bn.{leaf}"] = sd[f"{src}.bn.{leaf}"]

    for i in range(4):
        pair(f"stem.conv{i + 1}", f"patch_embed.{2 * i}")
    block = {stage: 0 for stage in range(3)}
    for official, native, kind in _official_units(config):
        stage = int(native.split(".")[1])
        if native.split(".")[2] == "shrink":
            timm = f"stages.{stage}.downsample." + ("attn_downsample" if kind == "shrink" else "mlp")
        else:
            timm = f"stages.{stage}.blocks.{block[stage]}.{kind}"
            block[stage] += kind == "mlp"
        if kind == "mlp":
            pair(f"{timm}.ln1", f"{official}.0")
            pair(f"{timm}.ln2", f"{official}.2")
            continue
        if kind == "attn":
            pair(f"{timm}.qkv", f"{official}.qkv")
        else:
            pair(f"{timm}.kv", f"{official}.kv")
            pair(f"{timm}.q.ln", f"{official}.q.1")
        pair(f"{timm}.proj.ln", f"{official}.proj.1")
        out[f"{timm}.attention_biases"] = sd[f"{official}.attention_biases"]  # idxs: not persistent in timm
    for head in ("head", "head_dist"):
        for leaf in BN_LEAVES:
            out[f"{head}.bn.{leaf}"] = sd[f"{head}.bn.{leaf}"]
        out[f"{head}.linear.weight"] = sd[f"{head}.l.weight"]
        out[f"{head}.linear.bias"] = sd[f"{head}.l.bias"]
    return out


@torch.no_grad()
def official_logits(sd: dict[str, torch.Tensor], config: LeViTConfig, images: torch.Tensor) -> torch.Tensor:
    """Eval-mode logits of an official-layout state dict, from functional ops only."""

    def bn(x: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"],
                            sd[f"{p}.bias"], training=False, eps=1e-5)

    def linear_bn(x: torch.Tensor, p: str) -> torch.Tensor:
        y = F.linear(x, sd[f"{p}.c.weight"])
        return bn(y.flatten(0, 1), f"{p}.bn").reshape_as(y)

    def attention(x, q, k, v, p, heads, key_dim):
        # A = Q K^T / sqrt(D) + B[h, |dy|, |dx|]  (the bias is not scaled), then Hardswish(A V)
        bias = sd[f"{p}.attention_biases"][:, sd[f"{p}.attention_bias_idxs"]]
        a = (q @ k.transpose(-2, -1)) * key_dim**-0.5 + bias
        out = (a.softmax(-1) @ v).transpose(1, 2).flatten(2)
        return linear_bn(F.hardswish(out), f"{p}.proj.1")

    x = images
    for i in (0, 2, 4, 6):
        if i:
            x = F.hardswish(x)
        x = bn(F.conv2d(x, sd[f"patch_embed.{i}.c.weight"], stride=2, padding=1), f"patch_embed.{i}.bn")
    x = x.flatten(2).transpose(1, 2)
    d = config.key_dim
    resolution = config.img_size // 16
    for p, native, kind in _official_units(config):
        stage = int(native.split(".")[1])
        b, n, c = x.shape
        if kind == "mlp":
            x = x + linear_bn(F.hardswish(linear_bn(x, f"{p}.0")), f"{p}.2")
        elif kind == "attn":
            heads = config.num_heads[stage]
            qkv = linear_bn(x, f"{p}.qkv").view(b, n, heads, 4 * d).transpose(1, 2)
            q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]
            x = x + attention(x, q, k, v, p, heads, d)
        else:
            heads = c // d
            kv = linear_bn(x, f"{p}.kv").view(b, n, heads, 5 * d).transpose(1, 2)
            k, v = kv[..., :d], kv[..., d:]
            sub = x.view(b, resolution, resolution, c)[:, ::2, ::2].reshape(b, -1, c)
            resolution = (resolution - 1) // 2 + 1
            q = linear_bn(sub, f"{p}.q.1").view(b, -1, heads, d).transpose(1, 2)
            x = attention(x, q, k, v, p, heads, d)
    pooled = x.mean(1)
    heads_out = [
        F.linear(bn(pooled, f"{h}.bn"), sd[f"{h}.l.weight"], sd[f"{h}.l.bias"]) for h in ("head", "head_dist")
    ]
    return (heads_out[0] + heads_out[1]) / 2
