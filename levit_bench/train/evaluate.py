"""Top-1 / top-5 counting, and a PyTorch module's accuracy over a loader (the trainer's
validation; `runners.accuracy` measures a runtime's the same way)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

TOP_K = 5


@dataclass
class Accuracy:
    """Running top-1 / top-k counts."""

    images: int = 0
    correct_top1: int = 0
    correct_top5: int = 0

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        k = min(TOP_K, logits.shape[-1])  # fewer than 5 classes: top-5 is every class
        top = logits.topk(k, dim=-1).indices
        hits = top == labels.view(-1, 1)
        self.images += labels.numel()
        self.correct_top1 += int(hits[:, 0].sum())
        self.correct_top5 += int(hits.any(dim=1).sum())

    @property
    def top1(self) -> float:
        return 100.0 * self.correct_top1 / self.images if self.images else 0.0

    @property
    def top5(self) -> float:
        return 100.0 * self.correct_top5 / self.images if self.images else 0.0


OnBatch = Callable[[Accuracy], None]


@torch.inference_mode()
def evaluate_module(model: torch.nn.Module, loader: DataLoader, device: str | torch.device = "cpu",
                    on_batch: OnBatch = lambda accuracy: None) -> Accuracy:
    """Accuracy of `model` (put in eval mode here) over `loader`'s (images, labels) batches."""
    model.eval()
    accuracy = Accuracy()
    for images, labels in loader:
        logits = model(images.to(device, non_blocking=True))
        accuracy.add(logits.float().cpu(), labels)
        on_batch(accuracy)
    return accuracy
