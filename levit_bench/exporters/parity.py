"""Does the exported file compute what the PyTorch model computes? Checked in ONNX Runtime."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

PARITY_INPUTS = 64
PARITY_SEED = 0


@dataclass(frozen=True)
class Tolerance:
    """How far a runtime's logits may be from the unfused PyTorch model's and still be right."""

    relative: float  # max |diff| <= relative x max(1, max |logit|)
    top1_agreement: float  # at least this fraction of the seeded inputs keep their argmax

    def bound(self, max_abs_logit: float) -> float:
        return self.relative * max(1.0, max_abs_logit)

    def violation(self, max_abs_diff: float, max_abs_logit: float, top1_agreement: float,
                  reference: str = "PyTorch") -> str | None:
        """Why these outputs are wrong (one line), or None when they are within tolerance."""
        bound = self.bound(max_abs_logit)
        if max_abs_diff <= bound and top1_agreement >= self.top1_agreement and math.isfinite(max_abs_diff):
            return None
        relation = "<=" if max_abs_diff <= bound else ">"
        return (f"outputs differ from {reference}: max|diff| {max_abs_diff:.3g} {relation} tol {bound:.3g}, "
                f"top-1 agreement {top1_agreement:.3f} (needs >= {self.top1_agreement:g})")


# The one table of output tolerances, per precision. fp32 is the exporter's own check. Reduced
# precisions round every activation (bf16 keeps 8 bits of mantissa, fp16 11), so their logits
# move by a few percent of the largest; they are still gated: a broken kernel or a corrupt
# weight moves logits by far more and scrambles the argmax.
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(relative=1e-4, top1_agreement=1.0),
    "fp16": Tolerance(relative=0.05, top1_agreement=0.9),
    "mixed": Tolerance(relative=0.05, top1_agreement=0.9),
    "bf16": Tolerance(relative=0.1, top1_agreement=0.9),
    "int8": Tolerance(relative=0.25, top1_agreement=0.8),
}


def tolerance_for(precision: str) -> Tolerance:
    return TOLERANCES[precision]


@dataclass(frozen=True)
class Parity:
    reference: str
    runtime: str
    inputs: int
    seed: int
    max_abs_diff: float
    max_abs_logit: float
    tolerance: float
    top1_agreement: float  # fraction of inputs whose argmax agrees

    @classmethod
    def of(cls, expected: np.ndarray, actual: np.ndarray, reference: str, runtime: str, seed: int) -> "Parity":
        """How far `actual` is from `expected` (one row per input, flattened)."""
        expected, actual = expected.reshape(len(expected), -1), actual.reshape(len(actual), -1)
        max_abs_logit = float(np.abs(expected).max())
        return cls(reference=reference, runtime=runtime, inputs=len(expected), seed=seed,
                   max_abs_diff=float(np.abs(actual - expected).max()), max_abs_logit=max_abs_logit,
                   tolerance=TOLERANCES["fp32"].bound(max_abs_logit),
                   top1_agreement=float((actual.argmax(1) == expected.argmax(1)).mean()))

    @property
    def passed(self) -> bool:
        return TOLERANCES["fp32"].violation(self.max_abs_diff, self.max_abs_logit, self.top1_agreement) is None

    def as_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def seeded_images(count: int, resolution: int, seed: int = PARITY_SEED) -> torch.Tensor:
    """Normalised-image-like inputs, identical for every runtime that asks for the same seed."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, 3, resolution, resolution, generator=generator)


@torch.no_grad()
def torch_logits(model: nn.Module, images: torch.Tensor, chunk: int = 16) -> np.ndarray:
    return torch.cat([model(part) for part in images.split(chunk)]).numpy()


def onnxruntime_outputs(model: bytes | str, images: np.ndarray, batch: int, optimise: bool = True,
                        threads: int | None = None) -> np.ndarray:
    """ONNX Runtime's (CPU, fp32) first output for `images`, fed `batch` at a time (a last part
    shorter than `batch` is left out); `optimise=False` runs the graph as written."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not optimise:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: images[i:i + batch]})[0]
                           for i in range(0, len(images) - batch + 1, batch)])


def check_parity(
    onnx_bytes: bytes, reference: nn.Module, resolution: int, batch: int | None,
    inputs: int = PARITY_INPUTS, seed: int = PARITY_SEED,
) -> Parity:
    """Compare ONNX Runtime's logits with `reference` (the unfused eval model) on seeded inputs.

    A static batch runs the inputs in whole batches (rounded up to a multiple of it); a
    symbolic batch runs them in batches of 16.
    """
    run_batch = batch or 16
    count = math.ceil(inputs / run_batch) * run_batch
    images = seeded_images(count, resolution, seed)
    expected = torch_logits(reference.eval(), images)
    actual = onnxruntime_outputs(onnx_bytes, images.numpy(), run_batch)
    return Parity.of(expected, actual, "unfused PyTorch eval model", "onnxruntime CPUExecutionProvider", seed)


@torch.no_grad()
def fused_difference(fused: nn.Module, reference: nn.Module, resolution: int, seed: int = PARITY_SEED) -> dict:
    """How far the fused PyTorch model is from the unfused one (max |diff|, and relative)."""
    images = seeded_images(16, resolution, seed)
    a, b = reference.eval()(images), fused(images)
    diff = float((a - b).abs().max())
    return {"max_abs_diff": diff, "relative": diff / max(float(a.abs().max()), 1e-12)}
