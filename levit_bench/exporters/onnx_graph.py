"""ONNX steps: export with torch.onnx (the torch.export-based exporter), simplify, check.

Both torch exporters give the same graph after onnxsim for LeViT; the torch.export-based one
is used because its raw graph is already free of Constant nodes and the TorchScript one is
deprecated since PyTorch 2.9.
"""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import warnings
from collections.abc import Iterator, Mapping

import torch
from torch import nn

from levit_bench.errors import LevitBenchError, one_line

EXPORTER = "torch.onnx dynamo (torch.export)"
DEFAULT_OPSET = 18
MIN_OPSET = 18  # the torch.export-based exporter writes opset 18 or newer
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
BATCH_AXIS = "batch"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter reports progress and torchvision's absence by print, log and warning."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export(model: nn.Module, example: torch.Tensor, opset: int, dynamic_batch: bool):
    """The fused model as an ONNX ModelProto, batch axis static or symbolic."""
    import onnx  # noqa: F401  (a missing package is reported before torch tries to use it)

    if opset < MIN_OPSET:
        raise LevitBenchError(f"opset {opset} is not supported: the exporter writes opset {MIN_OPSET} or newer")
    dynamic_shapes = ({0: torch.export.Dim(BATCH_AXIS, min=1, max=4096)},) if dynamic_batch else None
    with _quiet(), torch.no_grad():
        try:
            program = torch.onnx.export(
                model, (example,), dynamo=True, opset_version=opset, verbose=False,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_shapes=dynamic_shapes,
            )
        except Exception as e:  # the exporter raises many types; all mean the same to the user
            reason = one_line(e, name_foreign=False)
            raise LevitBenchError(f"torch.onnx export failed at opset {opset}: {reason}") from None
    return program.model_proto


def simplify(model):
    """onnxsim: constant folding (shape arithmetic included), then its default optimisations."""
    import onnxsim

    with _quiet():
        simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise LevitBenchError("onnxsim could not validate the simplified model")
    return simplified


def check(model) -> None:
    """onnx.checker with full (strict) shape inference."""
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise LevitBenchError(f"exported ONNX fails onnx.checker: {one_line(e, name_foreign=False)}") from None


def op_histogram(model) -> dict[str, int]:
    """Node count per op type, most frequent first."""
    counts = collections.Counter(node.op_type for node in model.graph.node)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def set_metadata(model, facts: Mapping[str, object]) -> None:
    """Replace the model's metadata_props with `facts` (keys prefixed `levit_bench.`)."""
    del model.metadata_props[:]
    for key, value in facts.items():
        entry = model.metadata_props.add()
        entry.key = f"levit_bench.{key}"
        entry.value = str(value)


def serialise(model) -> bytes:
    """Deterministic bytes: the same graph and weights give the same file."""
    return model.SerializeToString(deterministic=True)
