"""ONNX steps: export with torch.onnx (the torch.export-based exporter), simplify, check.

Both torch exporters give the same graph after onnxsim for LeViT; the torch.export-based one
is used because its raw graph is already free of Constant nodes and the TorchScript one is
deprecated since PyTorch 2.9.
"""

from __future__ import annotations

import collections
import contextlib
import functools
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
_CHATTY_LOGGERS = ("torch.onnx", "onnxscript")  # onnxscript: its version converter's warnings, tracebacks
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
BATCH_AXIS = "batch"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter reports progress and torchvision's absence by print, log and warning, and
    onnxscript logs a failed opset conversion (traceback included) as a warning and goes on.
    A failure that matters is raised, or caught by `export`'s opset check: the logs are noise."""
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def opset_of(model) -> int:
    """The model's opset of the default (ai.onnx) domain; 0 if it imports none."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _onnxruntime_loads(opset: int) -> bool:
    """Whether ONNX Runtime opens a one-node model stamped with `opset` (and the lowest IR
    version that opset needs): it refuses opsets newer than its build knows."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [value],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    opsets = [helper.make_opsetid("", opset)]
    probe = helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))
    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: a refusal is the answer here, not an error to log
    try:
        ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception:  # ONNX Runtime raises its own Fail (or InvalidGraph) types
        return False
    return True


@functools.cache
def highest_opset() -> int:
    """The newest opset an export can have here: one that onnx knows (torch.onnx converts to it
    with onnx's version converter when onnxscript's cannot) and ONNX Runtime runs, since
    onnxsim folds constants and the parity check verifies the file in it. Below MIN_OPSET if
    the installed ONNX Runtime runs none of the exporter's opsets."""
    import onnx

    opset = onnx.defs.onnx_opset_version()
    while opset >= MIN_OPSET and not _onnxruntime_loads(opset):
        opset -= 1
    return opset


def check_opset(opset: int) -> None:
    """Refuse at once an opset outside MIN_OPSET..`highest_opset()`: given one, the exporter
    warns, writes opset 18 and returns as if it had succeeded."""
    highest = highest_opset()
    if MIN_OPSET <= opset <= highest:
        return
    import onnx
    import onnxruntime

    versions = f"onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}"
    if highest < MIN_OPSET:
        raise LevitBenchError(f"opset {opset} is not supported: the exporter writes opset {MIN_OPSET} or newer, "
                              f"which this onnxruntime cannot run ({versions})")
    supported = f"opsets {MIN_OPSET} to {highest}" if highest > MIN_OPSET else f"opset {MIN_OPSET} only"
    raise LevitBenchError(f"opset {opset} is not supported: the exporter writes {supported} here ({versions})")


def export(model: nn.Module, example: torch.Tensor, opset: int, dynamic_batch: bool):
    """The fused model as an ONNX ModelProto of exactly `opset`, batch axis static or symbolic.

    The exporter converts its opset-18 graph to `opset` and, where a version converter fails,
    keeps opset 18 without raising: the graph's own opset is checked for that."""
    import onnx  # noqa: F401  (a missing package is reported before torch tries to use it)

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
    written = opset_of(program.model_proto)
    if written != opset:
        raise LevitBenchError(f"torch.onnx could not convert the model to opset {opset} (it wrote opset {written})")
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
