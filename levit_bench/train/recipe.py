"""The paper's training recipe (Section 5.2, the DeiT/LeViT defaults) as data, plus its parts.

AdamW at 5e-4 x batch/512, weight decay 0.025 (none on biases, norms, attention biases and
tokens), cosine schedule with 5 warm-up epochs, label smoothing 0.1, mixup 0.8 / CutMix 1.0,
drop path per model, adaptive gradient clipping at 0.02 (the official LeViT setting), and an
optional EMA of the weights. Every field is a flag of `levit-bench train`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

NO_DECAY_NAMES = ("table", "cls_token", "dist_token", "pos_embed")  # LeViT attention biases, DeiT tokens


@dataclass
class TrainConfig:
    model: str
    data: Path
    out: Path
    teacher: str | None = None  # NAME or NAME:WEIGHTS
    distillation: str | None = None  # hard | soft | none; None: hard with a teacher, else none
    epochs: int = 1000  # the paper's schedule
    batch_size: int = 256  # per process
    lr: float | None = None  # None: 5e-4 x global batch / 512
    min_lr: float = 1e-5
    warmup_lr: float = 1e-6
    warmup_epochs: int = 5
    weight_decay: float = 0.025
    smoothing: float = 0.1
    mixup: float = 0.8
    cutmix: float = 1.0
    drop_path: float | None = None  # None: the model's own (Table 2)
    clip_grad: float | None = 0.02  # adaptive (unit-wise) clipping; None: off
    distillation_alpha: float = 0.5
    distillation_tau: float = 1.0
    ema: bool = False
    ema_decay: float = 0.99996
    workers: int = 4
    seed: int = 0
    steps_per_epoch: int | None = None  # cap the steps of each epoch (quick runs, tests)
    stop_after: int | None = None  # stop after this many epochs of the schedule (--resume continues)
    amp: bool | None = None  # None: on with CUDA
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        """Refuse, in one line, a configuration no run could follow (before any data is read)."""
        from levit_bench.errors import LevitBenchError
        from levit_bench.registry import get_spec

        for name, low in (("epochs", 1), ("batch_size", 1), ("warmup_epochs", 0), ("workers", 0),
                          ("steps_per_epoch", 1), ("stop_after", 1)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise LevitBenchError(f"--{name.replace('_', '-')} must be at least {low}, not {value}")
        self.model = get_spec(self.model).name
        if self.teacher:
            get_spec(self.teacher.partition(":")[0])

    @classmethod
    def defaults(cls) -> dict:
        """Each option's default, for --help."""
        return {f.name: f.default for f in fields(cls) if f.default is not MISSING}

    def as_dict(self) -> dict:
        d = asdict(self)
        d["data"], d["out"] = str(self.data), str(self.out)
        return d


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weights, none on biases, norms, attention biases and tokens."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if parameter.ndim <= 1 or name.split(".")[-1] in NO_DECAY_NAMES:
            no_decay.append(parameter)
        else:
            decay.append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def learning_rate(step: int, total_steps: int, warmup_steps: int, base: float, warmup_lr: float, min_lr: float) -> float:
    """Linear warm-up from `warmup_lr`, then cosine from `base` to `min_lr`, per step."""
    if step < warmup_steps:
        return warmup_lr + (base - warmup_lr) * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + (base - min_lr) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _unitwise_norm(t: torch.Tensor) -> torch.Tensor:
    if t.ndim <= 1:
        return t.norm(2)
    return t.norm(2, dim=tuple(range(1, t.ndim)), keepdim=True)


@torch.no_grad()
def adaptive_clip_grad(parameters, clip: float, eps: float = 1e-3) -> None:
    """Clip each unit's gradient to `clip` x its weight norm (Brock et al., 2021)."""
    for p in parameters:
        if p.grad is None:
            continue
        max_norm = _unitwise_norm(p).clamp_(min=eps) * clip
        grad_norm = _unitwise_norm(p.grad)
        scale = (max_norm / grad_norm.clamp(min=1e-6)).clamp(max=1.0)
        p.grad.mul_(torch.where(grad_norm > max_norm, scale, torch.ones_like(scale)))


class WeightEma:
    """An exponential moving average of the weights (and a copy of the buffers)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for ema, current in zip(self.module.state_dict().values(), model.state_dict().values()):
            if ema.dtype.is_floating_point:
                ema.mul_(self.decay).add_(current.detach(), alpha=1 - self.decay)
            else:
                ema.copy_(current)
