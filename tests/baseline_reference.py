"""Test support: timm's layouts for the baselines and their forward passes, written from
timm's key names and computation order with functional ops only (no levit_bench modules).

`*_to_timm` renames a native state dict into timm's layout; `*_logits` evaluates a timm-layout
state dict the way timm does (eval mode, fused scaled-dot-product attention as timm's default).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BN_LEAVES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _rename(sd: dict, pairs: list[tuple[str, str]]) -> dict:
    """Rename by module prefix: each (native prefix, timm prefix), longest first."""
    out = {}
    for key, value in sd.items():
        for native, timm in sorted(pairs, key=lambda p: -len(p[0])):
            if key.startswith(native):
                key = timm + key[len(native):]
                break
        out[key] = value
    return out


# ---------------------------------------------------------------- EfficientNet

def efficientnet_to_timm(sd: dict, plan: list[tuple]) -> dict:
    pairs = [("stem.conv.", "conv_stem."), ("stem.bn.", "bn1."), ("head_conv.conv.", "conv_head."),
             ("head_conv.bn.", "bn2."), ("classifier.", "classifier.")]
    for i, (block, repeats, *_rest) in enumerate(plan):
        for j in range(repeats):
            n, t = f"stages.{i}.{j}.", f"blocks.{i}.{j}."
            pairs += [(n + "se.reduce.", t + "se.conv_reduce."), (n + "se.expand.", t + "se.conv_expand.")]
            if block == "ds":
                pairs += [(n + "dw.conv.", t + "conv_dw."), (n + "dw.bn.", t + "bn1."),
                          (n + "project.conv.", t + "conv_pw."), (n + "project.bn.", t + "bn2.")]
            else:
                pairs += [(n + "expand.conv.", t + "conv_pw."), (n + "expand.bn.", t + "bn1."),
                          (n + "dw.conv.", t + "conv_dw."), (n + "dw.bn.", t + "bn2."),
                          (n + "project.conv.", t + "conv_pwl."), (n + "project.bn.", t + "bn3.")]
    return _rename(sd, pairs)


def _bn(sd, x, p, eps=1e-5):
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                        training=False, eps=eps)


def _conv(sd, x, key, stride=1, groups=1, bias=None):
    weight = sd[key]
    return F.conv2d(x, weight, bias, stride, (weight.shape[-1] - 1) // 2, groups=groups)


@torch.no_grad()
def efficientnet_logits(sd: dict, plan: list[tuple], images: torch.Tensor) -> torch.Tensor:
    x = F.silu(_bn(sd, _conv(sd, images, "conv_stem.weight", 2), "bn1"))
    for i, (block, repeats, kernel, stride, *_rest) in enumerate(plan):
        for j in range(repeats):
            p, s = f"blocks.{i}.{j}", stride if j == 0 else 1
            y = x if block == "ds" else F.silu(_bn(sd, _conv(sd, x, f"{p}.conv_pw.weight"), f"{p}.bn1"))
            dw_bn = f"{p}.bn1" if block == "ds" else f"{p}.bn2"
            y = F.silu(_bn(sd, _conv(sd, y, f"{p}.conv_dw.weight", s, groups=y.shape[1]), dw_bn))
            gate = y.mean((2, 3), keepdim=True)
            gate = F.conv2d(F.silu(F.conv2d(gate, sd[f"{p}.se.conv_reduce.weight"], sd[f"{p}.se.conv_reduce.bias"])),
                            sd[f"{p}.se.conv_expand.weight"], sd[f"{p}.se.conv_expand.bias"])
            y = y * gate.sigmoid()
            if block == "ds":
                y = _bn(sd, _conv(sd, y, f"{p}.conv_pw.weight"), f"{p}.bn2")
            else:
                y = _bn(sd, _conv(sd, y, f"{p}.conv_pwl.weight"), f"{p}.bn3")
            x = x + y if s == 1 and x.shape[1] == y.shape[1] else y
    x = F.silu(_bn(sd, _conv(sd, x, "conv_head.weight"), "bn2"))
    return F.linear(F.adaptive_avg_pool2d(x, 1).flatten(1), sd["classifier.weight"], sd["classifier.bias"])


# ---------------------------------------------------------------- transformer blocks (timm's ViT Block)

def _vit_block(sd, x, p, heads, act, eps):
    b, n, c = x.shape
    h = F.layer_norm(x, (c,), sd[f"{p}.norm1.weight"], sd[f"{p}.norm1.bias"], eps)
    qkv = F.linear(h, sd[f"{p}.attn.qkv.weight"], sd[f"{p}.attn.qkv.bias"])
    q, k, v = qkv.reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4).unbind(0)
    h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
    x = x + F.linear(h, sd[f"{p}.attn.proj.weight"], sd[f"{p}.attn.proj.bias"])
    h = F.layer_norm(x, (c,), sd[f"{p}.norm2.weight"], sd[f"{p}.norm2.bias"], eps)
    h = act(F.linear(h, sd[f"{p}.mlp.fc1.weight"], sd[f"{p}.mlp.fc1.bias"]))
    return x + F.linear(h, sd[f"{p}.mlp.fc2.weight"], sd[f"{p}.mlp.fc2.bias"])


# ---------------------------------------------------------------- DeiT (distilled)

@torch.no_grad()
def deit_logits(sd: dict, heads: int, depth: int, images: torch.Tensor) -> torch.Tensor:
    x = F.conv2d(images, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=16)
    x = x.flatten(2).transpose(1, 2)
    b = x.shape[0]
    x = torch.cat([sd["cls_token"].expand(b, -1, -1), sd["dist_token"].expand(b, -1, -1), x], dim=1)
    x = x + sd["pos_embed"]
    for i in range(depth):
        x = _vit_block(sd, x, f"blocks.{i}", heads, F.gelu, 1e-6)
    x = F.layer_norm(x, (x.shape[-1],), sd["norm.weight"], sd["norm.bias"], 1e-6)
    cls = F.linear(x[:, 0], sd["head.weight"], sd["head.bias"])
    dist = F.linear(x[:, 1], sd["head_dist.weight"], sd["head_dist.bias"])
    return (cls + dist) / 2


# ---------------------------------------------------------------- MobileViT

def mobilevit_to_timm(sd: dict, mvit_blocks: list[str]) -> dict:
    pairs = [("head_conv.", "final_conv."), ("classifier.", "head.fc.")]
    for key in sd:
        if key.startswith("stages."):
            block = ".".join(key.split(".")[:3])
            if block in mvit_blocks:
                pairs += [(f"{block}.local.", f"{block}.conv_kxk."), (f"{block}.to_tokens.", f"{block}.conv_1x1."),
                          (f"{block}.to_channels.", f"{block}.conv_proj."), (f"{block}.fusion.", f"{block}.conv_fusion.")]
            else:
                pairs += [(f"{block}.expand.", f"{block}.conv1_1x1."), (f"{block}.dw.", f"{block}.conv2_kxk."),
                          (f"{block}.project.", f"{block}.conv3_1x1.")]
    return _rename(sd, sorted(set(pairs)))


def _conv_bn_act(sd, x, p, stride=1, groups=1, act=True):
    y = _bn(sd, _conv(sd, x, f"{p}.conv.weight", stride, groups), f"{p}.bn")
    return F.silu(y) if act else y


@torch.no_grad()
def mobilevit_logits(sd: dict, images: torch.Tensor) -> torch.Tensor:
    x = _conv_bn_act(sd, images, "stem", 2)
    stage = 0
    while f"stages.{stage}.0.conv1_1x1.conv.weight" in sd:
        block = 0
        while any(k.startswith(f"stages.{stage}.{block}.") for k in sd):
            p = f"stages.{stage}.{block}"
            if f"{p}.conv1_1x1.conv.weight" in sd:  # inverted residual; stride 2 first in stages 1-4
                stride = 2 if stage > 0 and block == 0 else 1
                y = _conv_bn_act(sd, x, f"{p}.conv1_1x1")
                y = _conv_bn_act(sd, y, f"{p}.conv2_kxk", stride, groups=y.shape[1])
                y = _conv_bn_act(sd, y, f"{p}.conv3_1x1", act=False)
                x = x + y if stride == 1 and x.shape[1] == y.shape[1] else y
            else:
                x = _mobilevit_block(sd, x, p)
            block += 1
        stage += 1
    x = _conv_bn_act(sd, x, "final_conv")
    return F.linear(F.adaptive_avg_pool2d(x, 1).flatten(1), sd["head.fc.weight"], sd["head.fc.bias"])


def _mobilevit_block(sd, x, p):
    shortcut = x
    x = _conv_bn_act(sd, x, f"{p}.conv_kxk")
    x = F.conv2d(x, sd[f"{p}.conv_1x1.weight"])
    b, d, h, w = x.shape
    nh, nw = h // 2, w // 2
    # timm's unfold: (B, d, H, W) -> (B * 4, patches, d), written out step by step
    x = x.reshape(b * d * nh, 2, nw, 2).transpose(1, 2).reshape(b, d, nh * nw, 4).transpose(1, 3).reshape(b * 4, -1, d)
    depth = 0
    while f"{p}.transformer.{depth}.norm1.weight" in sd:
        x = _vit_block(sd, x, f"{p}.transformer.{depth}", 4, F.silu, 1e-5)
        depth += 1
    x = F.layer_norm(x, (d,), sd[f"{p}.norm.weight"], sd[f"{p}.norm.bias"], 1e-5)
    x = x.contiguous().view(b, 4, nh * nw, -1).transpose(1, 3).reshape(b * d * nh, nw, 2, 2)
    x = x.transpose(1, 2).reshape(b, d, h, w)
    x = _conv_bn_act(sd, x, f"{p}.conv_proj")
    return _conv_bn_act(sd, torch.cat([shortcut, x], dim=1), f"{p}.conv_fusion")
