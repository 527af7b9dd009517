"""The inference transform: the model as it should run, not as it was trained.

Every layer that knows how to fold itself has a `fuse()` method returning its replacement
(Conv+BN -> Conv, Linear+BN -> Linear, BN+Linear -> Linear, a bias table -> a constant, two
heads -> one). The walk here only visits children before parents, so a parent sees its
children already folded.
"""

from __future__ import annotations

import copy

from torch import nn


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """A folded copy of `model` in eval mode, without gradients; `model` is left as it was."""
    fused = _fuse_tree(copy.deepcopy(model).eval())
    return fused.requires_grad_(False).eval()


def graph_form(model: nn.Module, form: str) -> nn.Module:
    """`model` (fused, changed in place) with every layer that has a choice of graph forms in
    `form` (`models.levit_fused.FORMS`): the same arithmetic in the ops a runtime delegates."""
    for module in model.modules():
        if form in getattr(module, "forms", ()):
            module.form = form
    return model


def _fuse_tree(module: nn.Module) -> nn.Module:
    for name, child in list(module.named_children()):
        setattr(module, name, _fuse_tree(child))
    if isinstance(module, nn.Dropout):
        return nn.Identity()
    fuse = getattr(module, "fuse", None)
    return fuse() if callable(fuse) else module
