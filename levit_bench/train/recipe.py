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
from numbers import Integral, Real
from pathlib import Path

import torch
from torch import nn

from levit_bench.errors import LevitBenchError
from levit_bench.train.distillation import MODES

NO_DECAY_NAMES = ("table", "cls_token", "dist_token", "pos_embed")  # LeViT attention biases, DeiT tokens


def _option(name: str) -> str:
    """The `levit-bench train` flag of a TrainConfig field."""
    return "--" + name.replace("_", "-")


def _shown(value: object) -> str:
    """A value as the user typed it: -1, not -1.0."""
    return str(value).removesuffix(".0") if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Range:
    """The values a numeric option takes: `low` to `high` (None: no upper end), each end included
    unless marked open; `integer` for counts; `or_none` where None means 'the default' or 'off'.
    NaN and the infinities are never in range."""

    low: float
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    or_none: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return math.isfinite(value) and above and below

    def __str__(self) -> str:
        if self.high is None:
            return f"> {self.low}" if self.low_open else f"at least {self.low}"
        return f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"

    def check(self, option: str, value: object) -> None:
        """Raise a LevitBenchError naming `option` unless `value` is in range."""
        if value is None and self.or_none:
            return
        kind, noun = (Integral, "a whole number") if self.integer else (Real, "a number")
        if isinstance(value, bool) or not isinstance(value, kind):
            raise LevitBenchError(f"{option} must be {noun}, not {value!r}")
        if not math.isfinite(value):
            raise LevitBenchError(f"{option} must be a finite number, not {_shown(value)}")
        if value not in self:
            raise LevitBenchError(f"{option} must be {self}, not {_shown(value)}")


# Every numeric TrainConfig field, with why its ends are where they are.
_RANGES: dict[str, Range] = {
    "epochs": Range(1, integer=True),
    "batch_size": Range(1, integer=True),
    "lr": Range(0, low_open=True, or_none=True),  # None: 5e-4 x global batch / 512
    "min_lr": Range(0),
    "warmup_lr": Range(0),
    "warmup_epochs": Range(0, integer=True),  # 0: no warm-up
    "weight_decay": Range(0),  # below 0, AdamW would grow the weights
    "smoothing": Range(0, 1, high_open=True),  # 1: uniform targets, nothing left to learn
    "mixup": Range(0),  # the Beta(alpha, alpha) parameter; 0: off
    "cutmix": Range(0),
    "drop_path": Range(0, 1, high_open=True, or_none=True),  # 1 drops every sample: 1/(1-p) divides by 0
    "clip_grad": Range(0, or_none=True),  # 0 or None: off; below 0, clipping would flip the gradients
    "distillation_alpha": Range(0, 1),  # the distillation head's share of the loss
    "distillation_tau": Range(0, low_open=True),  # a temperature: logits are divided by it
    "ema_decay": Range(0, 1, high_open=True),  # 1 would freeze the average at the initial weights
    "workers": Range(0, integer=True),  # 0: load in the training process
    "seed": Range(0, 2**31 - 1, integer=True),  # numpy takes 32-bit seeds; each process adds its rank
    "steps_per_epoch": Range(1, integer=True, or_none=True),
    "stop_after": Range(1, integer=True, or_none=True),
}


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

    def __post_init__(self) -> None:
        """Refuse, in one line naming the option, a configuration no run could follow.

        The CLI builds its config before it creates OUT or reads any data, so a bad option costs
        nothing; the Python API is checked by the same code.
        """
        from levit_bench.registry import get_spec

        for name, allowed in _RANGES.items():
            allowed.check(_option(name), getattr(self, name))
        if self.distillation is not None and self.distillation not in MODES:
            raise LevitBenchError(f"--distillation is one of {', '.join(MODES)}, not {self.distillation}")
        if self.distillation in ("hard", "soft") and not self.teacher:
            raise LevitBenchError(f"{self.distillation} distillation needs a teacher (--teacher NAME[:WEIGHTS])")
        # The cosine anneals from lr down to min_lr: above it, the schedule would climb instead. The
        # default lr (5e-4 x global batch / 512) depends on the world size, so only an explicit one
        # is compared. A warm-up as long as the run or longer is allowed (`--epochs 1` with the
        # default 5): the lr then only ramps up, a well-defined if unusual schedule.
        if self.lr is not None and self.min_lr > self.lr:
            raise LevitBenchError(f"--min-lr ({_shown(self.min_lr)}) must not exceed --lr ({_shown(self.lr)}): "
                                  "the schedule anneals from --lr down to --min-lr")
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
