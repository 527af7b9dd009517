"""timm's checkpoint layouts for the baselines, renamed module by module into the native ones.

DeiT needs no renaming (its native names are timm's and the official release's); EfficientNet
and MobileViT differ mostly in what each conv of a block is called (timm's `bn1`, `bn2` mean
different convs in a depthwise-separable and an inverted-residual block).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from levit_bench.models.checkpoints import CheckpointLayout, StateDict, rename_modules
from levit_bench.models.efficientnet import stage_plan
from levit_bench.models.mobilevit import MobileViTBlock

_SAME = [("", "")]

_EFFICIENTNET_RULES = {
    "same": _SAME,
    "ds": [("conv_dw.", "dw.conv."), ("bn1.", "dw.bn."), ("se.conv_reduce.", "se.reduce."),
           ("se.conv_expand.", "se.expand."), ("conv_pw.", "project.conv."), ("bn2.", "project.bn.")],
    "ir": [("conv_pw.", "expand.conv."), ("bn1.", "expand.bn."), ("conv_dw.", "dw.conv."), ("bn2.", "dw.bn."),
           ("se.conv_reduce.", "se.reduce."), ("se.conv_expand.", "se.expand."), ("conv_pwl.", "project.conv."),
           ("bn3.", "project.bn.")],
}

_MOBILEVIT_RULES = {
    "same": _SAME,
    "ir": [("conv1_1x1.", "expand."), ("conv2_kxk.", "dw."), ("conv3_1x1.", "project.")],
    "mvit": [("conv_kxk.", "local."), ("conv_1x1.", "to_tokens."), ("transformer.", "transformer."),
             ("norm.", "norm."), ("conv_proj.", "to_channels."), ("conv_fusion.", "fusion.")],
    "head": [("fc.", "")],
}


def _efficientnet_to_native(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> StateDict:
    modules = {"conv_stem": ("stem.conv", "same"), "bn1": ("stem.bn", "same"),
               "conv_head": ("head_conv.conv", "same"), "bn2": ("head_conv.bn", "same"),
               "classifier": ("classifier", "same")}
    for i, (block, repeats, *_rest) in enumerate(stage_plan(model.config)):
        for j in range(repeats):
            modules[f"blocks.{i}.{j}"] = (f"stages.{i}.{j}", block)
    return rename_modules(state_dict, modules, _EFFICIENTNET_RULES, model)


def _mobilevit_to_native(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> StateDict:
    modules = {"stem": ("stem", "same"), "final_conv": ("head_conv", "same"), "head": ("classifier", "head")}
    for stage, blocks in enumerate(model.stages):
        for j, block in enumerate(blocks):
            kind = "mvit" if isinstance(block, MobileViTBlock) else "ir"
            modules[f"stages.{stage}.{j}"] = (f"stages.{stage}.{j}", kind)
    return rename_modules(state_dict, modules, _MOBILEVIT_RULES, model)


EFFICIENTNET_LAYOUTS = (
    CheckpointLayout("timm", marker="conv_stem.weight", to_native=_efficientnet_to_native),
)
MOBILEVIT_LAYOUTS = (
    CheckpointLayout("timm", marker="final_conv.conv.weight", to_native=_mobilevit_to_native),
)
DEIT_LAYOUTS = (
    CheckpointLayout("timm", marker="dist_token", to_native=lambda state_dict, model: dict(state_dict)),
)
