"""LeViT checkpoint layouts: the official facebookresearch/LeViT release, timm's and transformers'.

All three are renamed module by module into levit-bench's own layout. The official release
numbers its blocks in one flat list across stages, so its names follow from the config;
transformers numbers the residual layers of each stage and ends stage i with the shrinking
attention and MLP that begin native stage i+1. Attention biases arrive as (heads, res*res)
tables indexed by |dy|*res + |dx| (each release numbers the offsets in order of first
appearance from the first query, which is that order), the same order as the native
(heads, res, res) table, so they only change shape.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from levit_bench.errors import CheckpointError
from levit_bench.models.checkpoints import DROP, CheckpointLayout, StateDict, rename_modules
from levit_bench.models.levit import LEVIT_CONFIGS, STEM_STRIDE, LeViTConfig

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


_TRANSFORMERS_RULES = {
    "conv": [("convolution.", "conv."), ("batch_norm.", "bn.")],
    "attn": [
        ("queries_keys_values.linear.", "qkv.linear."), ("queries_keys_values.batch_norm.", "qkv.bn."),
        ("projection.linear.", "proj.linear."), ("projection.batch_norm.", "proj.bn."),
        ("attention_biases", "attention_bias.table"), ("attention_bias_idxs", DROP),
    ],
    "shrink_attn": [
        ("keys_values.linear.", "kv.linear."), ("keys_values.batch_norm.", "kv.bn."),
        ("queries.linear.", "q.linear."), ("queries.batch_norm.", "q.bn."),
        ("projection.linear.", "proj.linear."), ("projection.batch_norm.", "proj.bn."),
        ("attention_biases", "attention_bias.table"), ("attention_bias_idxs", DROP),
    ],
    "mlp": [("linear_up.linear.", "expand.linear."), ("linear_up.batch_norm.", "expand.bn."),
            ("linear_down.linear.", "reduce.linear."), ("linear_down.batch_norm.", "reduce.bn.")],
    "head": [("batch_norm.", "bn."), ("linear.", "linear.")],
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


def _transformers_modules(config: LeViTConfig) -> dict[str, tuple[str, str]]:
    modules = {f"levit.patch_embeddings.embedding_layer_{i + 1}": (f"patch_conv.{2 * i}", "conv") for i in range(4)}
    for stage, depth in enumerate(config.depths):
        layers = f"levit.encoder.stages.{stage}.layers"
        for j in range(depth):
            modules[f"{layers}.{2 * j}.module"] = (f"stages.{stage}.blocks.{j}.attn", "attn")
            modules[f"{layers}.{2 * j + 1}.module"] = (f"stages.{stage}.blocks.{j}.mlp", "mlp")
        if stage + 1 < len(config.depths):  # the shrinking attention has no residual wrapper
            modules[f"{layers}.{2 * depth}"] = (f"stages.{stage + 1}.shrink.attn", "shrink_attn")
            modules[f"{layers}.{2 * depth + 1}.module"] = (f"stages.{stage + 1}.shrink.mlp", "mlp")
    modules.update(classifier=("head", "head"), classifier_distill=("head_dist", "head"))
    return modules


def _official_to_native(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> StateDict:
    return rename_modules(state_dict, _official_modules(model.config), _OFFICIAL_RULES, model)


def _timm_to_native(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> StateDict:
    return rename_modules(state_dict, _timm_modules(model.config), _TIMM_RULES, model)


def _transformers_to_native(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> StateDict:
    """`LevitForImageClassificationWithTeacher`, or `LevitForImageClassification`, whose one
    classifier then serves as both heads (their average is that classifier)."""
    native = rename_modules(state_dict, _transformers_modules(model.config), _TRANSFORMERS_RULES, model)
    if not any(key.startswith("classifier_distill.") for key in state_dict):
        native.update({f"head_dist.{k[len('head.'):]}": v for k, v in native.items() if k.startswith("head.")})
    return native


def _transformers_sizes(config: LeViTConfig) -> dict[str, object]:
    """A native config in `LevitConfig`'s terms."""
    return {
        "image_size": config.img_size, "patch_size": STEM_STRIDE, "num_channels": 3,
        "hidden_sizes": list(config.embed_dims), "num_attention_heads": list(config.num_heads),
        "depths": list(config.depths), "key_dim": [config.key_dim] * 3,
        "attention_ratio": [config.attn_ratio] * 3, "mlp_ratio": [config.mlp_ratio] * 3,
    }


# LevitConfig's defaults (LeViT-128's sizes), for the fields a config.json leaves out
_TRANSFORMERS_DEFAULTS = _transformers_sizes(LEVIT_CONFIGS["levit_128"])


def _check_transformers_config(config: Mapping, model: nn.Module, model_name: str) -> None:
    """Refuse a transformers config.json whose sizes are not those of the model asked for."""
    if config.get("model_type", "levit") != "levit":
        raise CheckpointError(f"config.json describes a {config['model_type']} model, not {model_name}")

    def differences(sizes: dict[str, object]) -> list[str]:
        return [f"{key} {config.get(key, default)} (not {sizes[key]})"
                for key, default in _TRANSFORMERS_DEFAULTS.items() if config.get(key, default) != sizes[key]]

    found = differences(_transformers_sizes(model.config))
    if not found:
        return
    same = [name for name, other in LEVIT_CONFIGS.items() if not differences(_transformers_sizes(other))]
    hint = f"; it describes {same[0]}" if same else ""
    raise CheckpointError(f"config.json does not describe {model_name}: {', '.join(found)}{hint}")


LEVIT_LAYOUTS = (
    CheckpointLayout("official", marker="patch_embed.0.c.weight", to_native=_official_to_native),
    CheckpointLayout("timm", marker="stem.conv1.linear.weight", to_native=_timm_to_native),
    CheckpointLayout("transformers", marker="levit.patch_embeddings.embedding_layer_1.convolution.weight",
                     to_native=_transformers_to_native, check_config=_check_transformers_config),
)
