"""A tiny image model registered for a test (32 x 32 images), for the mechanics of runtimes whose
builds of a LeViT take minutes: a test module imports the `tiny` fixture from here."""

import functools
from pathlib import Path

import pytest
import torch
from torch import nn

from levit_bench import registry
from levit_bench.models.checkpoints import save_weights

TINY = "pathnet_s"


def _tiny_net(num_classes: int = 1000, width: int = 8) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.Hardswish(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))


def write_tiny_onnx(path: Path) -> None:
    """A small conv net as a user's own ONNX file: one input `pixels`, a symbolic batch, 32 x 32 images."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 10)).eval()
    torch.onnx.export(model, (torch.randn(2, 3, 32, 32),), str(path), dynamo=True, verbose=False,
                      input_names=["pixels"], dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))


@pytest.fixture()
def tiny(tmp_path):
    """The tiny model registered, and two weight files of it."""
    registry.register_family(registry.Family("pathnet", "PathNet", "#aa5500"))
    registry.register_model(registry.ModelSpec(
        name=TINY, family="pathnet", resolution=32, short_name="P-S", builder=functools.partial(_tiny_net, width=8),
        preprocessing=registry.Preprocessing(resize=36, crop=32, interpolation="bilinear", source="a test"),
        reported=registry.Reported(params_m=0.001, macs_m=None, top1=None, source="a test's tiny net"),
    ))
    weights = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        path = tmp_path / f"tiny-{seed}.safetensors"
        save_weights(registry.get_spec(TINY).build(), path, TINY)
        weights.append(path)
    yield weights
    registry.unregister_model(TINY)
    registry.unregister_family("pathnet")
