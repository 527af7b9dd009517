"""LeViT checkpoint layouts: the official facebookresearch/LeViT release and timm's.

Both are renamed module by module into levit-bench's own layout. The official release
numbers its blocks in one flat list across stages, so its names follow from the config.
Attention biases arrive as (heads, res*res) tables indexed by |dy|*res + |dx|, the same order
as the native (heads, res, res) table, so they only change shape.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from levit_bench.models.checkpoints import DROP, CheckpointLayout, StateDict, rename_modules
from levit_bench.models.levit import LeViTConfig

# leaf rules per module kind: (foreign leaf prefix, native leaf prefix or DROP)
_OFFICIAL_RULES = {
    "conv": [("c.", "conv."), ("bn.", "bn.")],
    "attn": [
        ("qkv.c.", "qkv.linear."), ("qkv.bn.", "qkv.bn."),
        ("proj.1.c.", "proj.linear."), ("proj.1.bn.", "proj.bn."),
        ("attention_biases", "attention_bias.table"), ("attention_bias_idxs", DROP),
    ],
    "shrink_attn": [
        ("kv.c.", "kv.linear."), ("kv.bn.", "kv.bn."),
        ("q.1.c.", "q.linear."), ("q.1.bn.", "q.bn."),
        ("proj.1.c.", "proj.linear."), ("proj.1.bn.", "proj.bn."),
        ("attention_biases", "attention_bias.table"), ("attention_bias_idxs", DROP),
    ],
    "mlp": [("0.c.", "expand.linear."), ("0.bn.", "expand.bn."), ("2.c.", "reduce.linear."), ("2.bn.", "reduce.bn.")],
    "head": [("bn.", "bn."), ("l.", "linear.")],
}

_TIMM_RULES = {
    "conv": [("linear.", "conv."), ("bn.", "bn.")],
    "attn": [
        ("qkv.", "qkv."), ("proj.ln.", "proj."),
        ("attention_biases", "attention_bias.table"), ("attention_bias_idxs", DROP),
    ],
    "shrink_attn": [
        ("kv.", "kv."), ("q.ln.", "q."), ("proj.ln.", "proj."),
        ("attention_biases", "attention_bias.table"), ("attention_bias_idxs", DROP),
    ],
    "mlp": [("ln1.", "expand."), ("ln2.", "reduce.")],
    "head": [("bn.", "bn."), ("linear.", "linear.")],
}


def _official_modules(config: LeViTConfig) -> dict[str, tuple[str, str]]:
    """official module name -> (native module name, kind)."""
    modules = {f"patch_embed.{i}": (f"patch_conv.{i}", "conv") for i in (0, 2, 4, 6)}
    index = 0
    for stage, depth in enumerate(config.depths):
        units = []
        if stage > 0:
            units += [("", f"stages.{stage}.shrink.attn", "shrink_attn"), (".m", f"stages.{stage}.shrink.mlp", "mlp")]
        for j in range(depth):
            units += [(".m", f"stages.{stage}.blocks.{j}.attn", "attn"), (".m", f"stages.{stage}.blocks.{j}.mlp", "mlp")]
        for suffix, native, kind in units:
            modules[f"blocks.{index}{suffix}"] = (native, kind)
            index += 1
    modules.update(head=("head", "head"), head_dist=("head_dist", "head"))
    return modules


def _timm_modules(config: LeViTConfig) -> dict[str, tuple[str, str]]:
    modules = {f"stem.conv{i + 1}": (f"patch_conv.{2 * i}", "conv") for i in range(4)}
    for stage, depth in enumerate(config.depths):
        if stage > 0:
            modules[f"stages.{stage}.downsample.attn_downsample"] = (f"stages.{stage}.shrink.attn", "shrink_attn")
            modules[f"stages.{stage}.downsample.mlp"] = (f"stages.{stage}.shrink.mlp", "mlp")
        for j in range(depth):
            for part in ("attn", "mlp"):
                name = f"stages.{stage}.blocks.{j}.{part}"
                modules[name] = (name, part)
    modules.update(head=("head", "head"), head_dist=("head_dist", "head"))
    return modules


def _official_to_native(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> StateDict:
    return rename_modules(state_dict, _official_modules(model.config), _OFFICIAL_RULES, model)


def _timm_to_native(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> StateDict:
    return rename_modules(state_dict, _timm_modules(model.config), _TIMM_RULES, model)


LEVIT_LAYOUTS = (
    CheckpointLayout("official", marker="patch_embed.0.c.weight", to_native=_official_to_native),
    CheckpointLayout("timm", marker="stem.conv1.linear.weight", to_native=_timm_to_native),
)
