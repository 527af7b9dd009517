"""The DeiT/LeViT training loss: the class head learns the labels, the distillation head the teacher.

`hard`: the distillation head learns the teacher's argmax (weight 0.5, the paper's setting);
`soft`: KL divergence to the teacher's softened distribution (temperature tau); `none`: both
heads learn the labels. A single-head model (the baselines) learns the labels only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from levit_bench.errors import LevitBenchError

MODES = ("hard", "soft", "none")


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()


class DistillationLoss(nn.Module):
    def __init__(self, mode: str, teacher: nn.Module | None = None, alpha: float = 0.5, tau: float = 1.0,
                 teacher_resolution: int | None = None):
        super().__init__()
        if mode not in MODES:
            raise LevitBenchError(f"distillation is one of {', '.join(MODES)}, not {mode}")
        if mode != "none" and teacher is None:
            raise LevitBenchError(f"{mode} distillation needs a teacher (--teacher NAME[:WEIGHTS])")
        self.mode, self.alpha, self.tau = mode, alpha, tau
        self.teacher = teacher
        self.teacher_resolution = teacher_resolution

    @torch.no_grad()
    def _teacher_logits(self, images: torch.Tensor) -> torch.Tensor:
        if self.teacher_resolution and images.shape[-1] != self.teacher_resolution:
            size = (self.teacher_resolution, self.teacher_resolution)
            images = F.interpolate(images, size=size, mode="bicubic", align_corners=False)
        return self.teacher(images)

    def forward(self, images: torch.Tensor, outputs, targets: torch.Tensor) -> torch.Tensor:
        if not isinstance(outputs, tuple):  # one head
            return soft_target_cross_entropy(outputs, targets)
        logits, logits_dist = outputs
        base = soft_target_cross_entropy(logits, targets)
        if self.mode == "none":
            return (base + soft_target_cross_entropy(logits_dist, targets)) / 2
        teacher = self._teacher_logits(images)
        if self.mode == "hard":
            distill = F.cross_entropy(logits_dist, teacher.argmax(dim=1))
        else:
            t = self.tau
            distill = F.kl_div(F.log_softmax(logits_dist / t, dim=1), F.log_softmax(teacher / t, dim=1),
                               reduction="sum", log_target=True) * (t * t) / logits_dist.numel()
        return base * (1 - self.alpha) + distill * self.alpha
