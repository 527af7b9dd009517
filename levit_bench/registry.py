"""One table of every model: builder, family, input size, preprocessing, published figures,
and how reports show it (its family's name and colour, its short label).

Published figures are reference data, never measurements: each carries its source, and
anything derived from them is labelled `reported`. `register_family` and `register_model`
are the public way to add a family and its models (a plugin, or a test).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import torch
from torch import nn

from levit_bench.errors import LevitBenchError, UnknownModelError
from levit_bench.models import checkpoints, deit, efficientnet, levit, mobilevit
from levit_bench.models.baseline_layouts import DEIT_LAYOUTS, EFFICIENTNET_LAYOUTS, MOBILEVIT_LAYOUTS
from levit_bench.models.components import GENERIC, ComponentRules
from levit_bench.models.counting import count_macs, count_parameters
from levit_bench.models.levit_layouts import LEVIT_LAYOUTS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

LEVIT_PAPER = "Graham et al., LeViT, ICCV 2021 (arXiv:2104.01136)"
LEVIT_TABLE3 = f"{LEVIT_PAPER}, Table 3"


@dataclass(frozen=True)
class PaperPlatform:
    """The machine behind one of the paper's speed columns (Table 3, Section 5.1)."""

    column: str  # as figures label the paper's points
    description: str


# The paper's three platforms, under levit-bench's platform names.
PAPER_PLATFORMS: Mapping[str, PaperPlatform] = MappingProxyType({
    "gpu": PaperPlatform("V100 GPU", "one 16GB NVIDIA Volta GPU, largest power-of-two batch, PyTorch"),
    "xeon": PaperPlatform("Intel Xeon 6138", "Intel Xeon 6138 at 2.0GHz, one thread, PyTorch"),
    "arm": PaperPlatform("ARM Graviton2", "ARM Graviton2 (AWS c6g), one thread, PyTorch"),
})


@dataclass(frozen=True)
class Family:
    """A model family as reports show it: its name in legends, its colour, and the vocabulary
    its profiles are told in (`models/components.py`); `attention`: its networks use attention
    (NNCF quantizes them as `ModelType.TRANSFORMER`)."""

    name: str
    label: str
    colour: str
    components: ComponentRules = GENERIC
    attention: bool = False


UNKNOWN_FAMILY_COLOUR = "#7f7f7f"
_FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("levit", "LeViT", "#d62728", levit.COMPONENTS, attention=True),
    Family("efficientnet", "EfficientNet", "#1f77b4", efficientnet.COMPONENTS),
    Family("deit", "DeiT", "#2ca02c", deit.COMPONENTS, attention=True),
    Family("mobilevit", "MobileViT", "#9467bd", mobilevit.COMPONENTS, attention=True),
    Family("user", "your ONNX", "#8c564b"),  # a model given as an ONNX file (`--onnx`): no PyTorch form
)}
FAMILIES: Mapping[str, Family] = MappingProxyType(_FAMILIES)


def family(name: str) -> Family:
    """A family's display facts; one nobody registered is drawn grey, named as it is."""
    return _FAMILIES.get(name) or Family(name, name, UNKNOWN_FAMILY_COLOUR)


def register_family(new: Family) -> None:
    if new.name in _FAMILIES:
        raise LevitBenchError(f"a family named {new.name} is already registered")
    _FAMILIES[new.name] = new


def unregister_family(name: str) -> None:
    _FAMILIES.pop(name, None)


@dataclass(frozen=True)
class Preprocessing:
    """Eval transform: resize the short side, centre-crop, normalise."""

    resize: int
    crop: int
    interpolation: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    source: str = ""


@dataclass(frozen=True)
class Reported:
    """Figures published for a model, with where they were published."""

    params_m: float | None  # None for a user's model, which nobody published
    macs_m: float | None  # None where the source publishes no multiply-add count
    top1: float | None
    source: str
    images_per_s: Mapping[str, float] = field(default_factory=dict)  # platform -> im/s
    extra_top1: Mapping[str, float] = field(default_factory=dict)  # e.g. ImageNet-Real


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    builder: Callable[..., nn.Module]
    resolution: int
    preprocessing: Preprocessing
    reported: Reported
    weights_url: str | None = None  # the publicly released checkpoint, if any
    checkpoint_layouts: tuple[checkpoints.CheckpointLayout, ...] = ()  # foreign layouts it reads
    short_name: str = ""  # its label next to a point in figures (default: the name)
    onnx: str | None = None  # a user's model known only as this ONNX file (family `user`)
    counts: tuple[int, int] | None = None  # (parameters, MACs) where no PyTorch model can count them

    def build(self, num_classes: int = 1000, **kwargs) -> nn.Module:
        """A randomly initialised model (train mode, as nn.Module leaves it)."""
        return self.builder(num_classes=num_classes, **kwargs)

    @property
    def label(self) -> str:
        return self.short_name or self.name

    def measured_counts(self) -> tuple[int, int]:
        """(parameters, multiply-adds at the model's resolution), from the code as it is now
        (a user's ONNX model: from its graph)."""
        if self.counts is not None:
            return self.counts
        with torch.device("meta"):
            model = self.build()
        return count_parameters(model), count_macs(model, self.resolution)


# Official eval transform of the LeViT repository (DeiT's): resize to 256/224 of the crop,
# bicubic, centre crop 224, ImageNet mean/std.
_LEVIT_PREPROCESSING = Preprocessing(
    resize=256,
    crop=224,
    interpolation="bicubic",
    source="facebookresearch/LeViT datasets.py (DeiT eval transform)",
)
_LEVIT_WEIGHTS = "https://dl.fbaipublicfiles.com/LeViT/LeViT-{}.pth"


def _table3_model(name: str, short_name: str, family: str, builder, resolution: int,
                  preprocessing: Preprocessing, layouts, params_m: float, macs_m: float, top1: float,
                  gpu: float, xeon: float, arm: float, real: float, v2: float,
                  weights_url: str | None = None) -> ModelSpec:
    """A model of the paper's Table 3, with its published figures."""
    return ModelSpec(
        name=name,
        family=family,
        builder=functools.partial(builder, name),
        resolution=resolution,
        preprocessing=preprocessing,
        reported=Reported(
            params_m=params_m, macs_m=macs_m, top1=top1, source=LEVIT_TABLE3,
            images_per_s=MappingProxyType({"gpu": gpu, "xeon": xeon, "arm": arm}),
            extra_top1=MappingProxyType({"imagenet_real": real, "imagenet_v2": v2}),
        ),
        checkpoint_layouts=layouts,
        weights_url=weights_url,
        short_name=short_name,
    )


def _levit(name: str, weights: str, *figures: float) -> ModelSpec:
    return _table3_model(name, name.removeprefix("levit_").upper(), "levit", levit.build_levit, 224,
                         _LEVIT_PREPROCESSING, LEVIT_LAYOUTS, *figures, weights_url=_LEVIT_WEIGHTS.format(weights))


def _efficientnet(name: str, *figures: float) -> ModelSpec:
    resolution = efficientnet.EFFICIENTNET_CONFIGS[name].resolution
    # The reference EfficientNet eval: centre crop of resolution / (resolution + 32), bicubic.
    preprocessing = Preprocessing(
        resize=resolution + 32, crop=resolution, interpolation="bicubic",
        source="EfficientNet reference eval transform (crop padding 32), as timm's tf_efficientnet configs",
    )
    return _table3_model(name, name.removeprefix("efficientnet_").upper(), "efficientnet",
                         efficientnet.build_efficientnet, resolution, preprocessing, EFFICIENTNET_LAYOUTS, *figures)


_DEIT_PREPROCESSING = Preprocessing(
    resize=256, crop=224, interpolation="bicubic", source="facebookresearch/deit datasets.py eval transform"
)


def _deit(name: str, *figures: float) -> ModelSpec:
    short = {"deit_tiny": "DeiT-Ti", "deit_small": "DeiT-S"}[name]
    return _table3_model(name, short, "deit", deit.build_deit, 224, _DEIT_PREPROCESSING, DEIT_LAYOUTS, *figures)


MOBILEVIT_PAPER = "Mehta & Rastegari, MobileViT, ICLR 2022 (arXiv:2110.02178), ImageNet-1k results"
_MOBILEVIT_PREPROCESSING = Preprocessing(
    resize=284, crop=256, interpolation="bicubic", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
    source="timm mobilevit default_cfg (crop_pct 0.9, inputs in [0, 1], no mean/std)",
)


def _mobilevit(name: str, params_m: float, top1: float) -> ModelSpec:
    return ModelSpec(
        name=name,
        family="mobilevit",
        builder=functools.partial(mobilevit.build_mobilevit, name),
        resolution=256,
        preprocessing=_MOBILEVIT_PREPROCESSING,
        reported=Reported(params_m=params_m, macs_m=None, top1=top1, source=MOBILEVIT_PAPER),
        checkpoint_layouts=MOBILEVIT_LAYOUTS,
        short_name=name.removeprefix("mobilevit_").upper(),
    )


_SPECS: tuple[ModelSpec, ...] = (
    #      name          weights         params  MACs  top1  GPU    Intel  ARM   Real  V2
    _levit("levit_128s", "128S-96703c44", 7.8, 305, 76.6, 12880, 131.1, 39.1, 83.1, 64.3),
    _levit("levit_128", "128-b88c2750", 9.2, 406, 78.6, 9266, 94.0, 30.8, 84.7, 66.6),
    _levit("levit_192", "192-92712e41", 10.9, 658, 80.0, 8601, 65.0, 24.2, 85.7, 68.0),
    _levit("levit_256", "256-13b5763e", 18.9, 1120, 81.6, 6582, 42.5, 16.4, 86.8, 70.0),
    _levit("levit_384", "384-9bdaf2e2", 39.1, 2353, 82.6, 4165, 23.1, 9.4, 87.6, 71.3),
    #             name               params MACs  top1  GPU   Intel ARM  Real  V2
    _efficientnet("efficientnet_b0", 5.3, 390, 77.1, 4754, 30.1, 3.5, 83.5, 64.3),
    _efficientnet("efficientnet_b1", 7.8, 700, 79.1, 2882, 20.0, 2.3, 84.9, 66.9),
    _efficientnet("efficientnet_b2", 9.2, 1000, 80.1, 2149, 13.1, 1.3, 85.9, 68.8),
    _efficientnet("efficientnet_b3", 12, 1800, 81.6, 1272, 5.9, 0.8, 86.8, 70.6),
    _efficientnet("efficientnet_b4", 19, 4200, 82.9, 606, 2.5, 0.5, 88.0, 72.3),
    _deit("deit_tiny", 5.9, 1220, 76.6, 3973, 39.1, 16.8, 83.9, 65.4),
    _deit("deit_small", 22.5, 4522, 82.6, 1931, 13.7, 7.6, 87.8, 71.7),
    #          name             params top1
    _mobilevit("mobilevit_xxs", 1.3, 69.0),
    _mobilevit("mobilevit_xs", 2.3, 74.8),
    _mobilevit("mobilevit_s", 5.6, 78.4),
)


def _no_pytorch_model(name: str, onnx: str, **_) -> nn.Module:
    raise LevitBenchError(f"{name} is the ONNX file {onnx}: it has no PyTorch model (measure it with onnxruntime, "
                          "openvino or tvm)")


def user_model_spec(name: str, onnx: str, resolution: int, params: int, macs: int) -> ModelSpec:
    """A model known only by its ONNX graph, counted there; its preprocessing is assumed
    (ImageNet mean and std, a 0.875 centre crop) and used only to calibrate an int8 twin."""
    return ModelSpec(
        name=name, family="user", builder=functools.partial(_no_pytorch_model, name, onnx), resolution=resolution,
        preprocessing=Preprocessing(resize=round(resolution / 0.875), crop=resolution, interpolation="bicubic",
                                    source="assumed for a user's ONNX model (ImageNet mean/std, crop 0.875)"),
        reported=Reported(params_m=None, macs_m=None, top1=None, source="none: a user's ONNX model"),
        onnx=onnx, counts=(params, macs),
    )


def added_onnx_models() -> list[dict]:
    """The user ONNX models registered in this process, as a worker process registers them again."""
    return [{"name": spec.name, "onnx": spec.onnx, "resolution": spec.resolution}
            for spec in _REGISTRY.values() if spec.onnx is not None]


_REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}
REGISTRY: Mapping[str, ModelSpec] = MappingProxyType(_REGISTRY)
_BUILT_IN = frozenset(_REGISTRY)


def register_model(spec: ModelSpec) -> None:
    """Add a model to the registry; its name (normalised) must be new."""
    name = normalise_name(spec.name)
    if name != spec.name:
        raise LevitBenchError(f"a model's name is lower case with underscores: {name}, not {spec.name}")
    if name in _REGISTRY:
        raise LevitBenchError(f"a model named {name} is already registered")
    _REGISTRY[name] = spec


def unregister_model(name: str) -> None:
    if name in _BUILT_IN:
        raise LevitBenchError(f"{name} is built in and cannot be unregistered")
    _REGISTRY.pop(name, None)


def normalise_name(name: str) -> str:
    """`LeViT-192`, `levit_192` and `LEVIT-192` all name the same model."""
    return name.strip().lower().replace("-", "_")


def get_spec(name: str) -> ModelSpec:
    try:
        return REGISTRY[normalise_name(name)]
    except KeyError:
        raise UnknownModelError(name, REGISTRY) from None


def model_names() -> list[str]:
    return list(REGISTRY)


def create_model(
    name: str, weights: str | None = None, num_classes: int = 1000
) -> tuple[nn.Module, checkpoints.LoadedWeights | None]:
    """The named model in eval mode, with `weights` (path or URL) loaded when given.

    A levit-bench checkpoint records its number of classes, which then wins over `num_classes`.
    """
    spec = get_spec(name)
    if not weights:
        return spec.build(num_classes=num_classes).eval(), None
    checkpoint = checkpoints.read_checkpoint(weights)
    model = spec.build(num_classes=checkpoint.num_classes or num_classes)
    loaded = checkpoints.fit(model, checkpoint, spec.checkpoint_layouts, model_name=spec.name)
    return model.eval(), loaded
