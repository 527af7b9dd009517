"""Mixup and CutMix with label smoothing, as in DeiT's recipe: soft targets for every batch.

Each batch is either mixed (mixup, Beta(alpha, alpha) weight) or cut-and-pasted (CutMix, a box
whose area is 1 - lambda), the switch drawn per batch; targets become the same mixture of
label-smoothed one-hot vectors. Randomness comes from torch's global generator, so a resumed
run that restores it mixes exactly as the uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def smoothed_one_hot(labels: torch.Tensor, classes: int, smoothing: float) -> torch.Tensor:
    off = smoothing / classes
    targets = torch.full((labels.shape[0], classes), off, device=labels.device)
    return targets.scatter_(1, labels.view(-1, 1), 1.0 - smoothing + off)


def _beta(alpha: float) -> float:
    return float(torch.distributions.Beta(alpha, alpha).sample())


@dataclass(frozen=True)
class Mixup:
    classes: int
    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    switch_prob: float = 0.5  # the chance of CutMix when both are on
    smoothing: float = 0.1

    @property
    def active(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        targets = smoothed_one_hot(labels, self.classes, self.smoothing)
        if not self.active or images.shape[0] < 2:
            return images, targets
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha <= 0 or float(torch.rand(())) < self.switch_prob)
        lam = _beta(self.cutmix_alpha if use_cutmix else self.mixup_alpha)
        flipped = images.flip(0)  # pair each image with its mirror in the batch, as timm does
        if use_cutmix:
            height, width = images.shape[-2:]
            cut = (1.0 - lam) ** 0.5
            cut_h, cut_w = int(height * cut), int(width * cut)
            cy, cx = int(torch.randint(height, ())), int(torch.randint(width, ()))
            top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
            left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
            images = images.clone()
            images[..., top:bottom, left:right] = flipped[..., top:bottom, left:right]
            lam = 1.0 - (bottom - top) * (right - left) / (height * width)  # the box as clipped
        else:
            images = images * lam + flipped * (1.0 - lam)
        return images, targets * lam + targets.flip(0) * (1.0 - lam)
