"""What an ONNX image model says of itself, read from its graph alone.

`inspect_onnx` gives what the protocol needs: its one input (float32 N x 3 x R x R; a symbolic
batch or a static one), its first output, its parameters (the floating-point initializers'
elements) and its multiply-adds per image: every Conv, Gemm and MatMul, from the shapes ONNX
shape inference gives at the graph's batch (1 where symbolic). Without module paths, its
components are its op types (`component_map`), and `graph_work_per_image` gives FLOPs and bytes
per component as `exporters/work.py` does for levit-bench's own models. Every node is known by
one name (`node_names`), the one the imported artifact gives it, whatever the file names it.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

from levit_bench.errors import LevitBenchError, one_line
from levit_bench.exporters.onnx_graph import op_histogram
from levit_bench.models.components import OTHER, op_kind

_FLOAT = 1  # onnx.TensorProto.FLOAT
_FLOATS = frozenset({1, 10, 11, 16})  # FLOAT, FLOAT16, DOUBLE, BFLOAT16: weights (not shapes, axes, indices)


class OnnxImportError(LevitBenchError):
    """A file that is not a single-input image model in ONNX."""


@dataclass(frozen=True)
class ForeignOnnx:
    path: Path
    sha256: str
    input_name: str
    output_name: str
    batch: int | None  # the graph's static batch, None where it is symbolic
    resolution: int
    params: int
    macs: int  # per image, at `resolution`
    uncounted: tuple[str, ...]  # Conv/Gemm/MatMul nodes whose shapes inference could not give
    opset: int
    op_histogram: dict[str, int]


def _dims(value_info) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in value_info.type.tensor_type.shape.dim]


def source_sha256(path: Path) -> str:
    """Of the ONNX file and of the external-data files it names (read in the order it names them)."""
    import onnx

    digest = hashlib.sha256(path.read_bytes())
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - not ONNX: its bytes alone identify it
        return digest.hexdigest()
    locations = dict.fromkeys(entry.value for tensor in model.graph.initializer for entry in tensor.external_data
                              if entry.key == "location")
    for location in locations:
        external = path.parent / location
        digest.update(external.read_bytes() if external.is_file() else b"")
    return digest.hexdigest()


def load_onnx(path: Path):
    import onnx

    if not path.is_file():
        raise OnnxImportError(f"ONNX file not found: {path}")
    try:
        return onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - protobuf's decode error, a missing external-data file, ...
        raise OnnxImportError(f"{path} is not an ONNX model: {one_line(e)}") from None


def image_input(model, path: Path, resolution: int | None) -> tuple[str, int | None, int]:
    """(input name, static batch or None, resolution), or a one-line refusal."""
    weights = {w.name for w in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise OnnxImportError(f"{path.name} has {len(inputs)} inputs ({names}); levit-bench measures models "
                              "whose one input is a batch of images")
    tensor, dims = inputs[0].type.tensor_type, _dims(inputs[0])
    shown = "x".join(map(str, dims)) or "a scalar"
    if tensor.elem_type != _FLOAT or len(dims) != 4 or dims[1] != 3:
        import onnx

        kind = onnx.TensorProto.DataType.Name(tensor.elem_type).lower() if tensor.elem_type else "non-tensor"
        raise OnnxImportError(f"{path.name}'s input {inputs[0].name} is {kind} {shown}, not an image batch: "
                              "levit-bench feeds float32 N x 3 x H x W")
    height, width = dims[2], dims[3]
    static = [d for d in (height, width) if isinstance(d, int) and d > 0]
    if len(static) == 2 and height != width:
        raise OnnxImportError(f"{path.name}'s input is {height}x{width}: levit-bench feeds square images")
    if static and resolution is not None and resolution != static[0]:
        raise OnnxImportError(f"{path.name}'s input is fixed at {static[0]}x{static[0]}, not --resolution {resolution}")
    if not static and resolution is None:
        raise OnnxImportError(f"{path.name}'s input has a symbolic size ({shown}): give --resolution R")
    batch = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None
    return inputs[0].name, batch, static[0] if static else resolution


def fixed_shapes(model, input_name: str, batch: int, resolution: int):
    """A copy whose input is `batch` x 3 x `resolution`^2, every tensor's shape inferred anew."""
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    del fixed.graph.value_info[:]  # what the file says was for its own input size
    for value in fixed.graph.input:
        if value.name == input_name:
            for dim, size in zip(value.type.tensor_type.shape.dim, (batch, 3, resolution, resolution)):
                dim.Clear()
                dim.dim_value = size
    try:
        return onnx.shape_inference.infer_shapes(fixed, data_prop=True)
    except Exception:  # noqa: BLE001 - an op shape inference does not know: count what it can
        return fixed


def node_names(model) -> list[str]:
    """Each node's name, in graph order, unique in the graph: its own, else (unnamed, or named as
    an earlier node is) `{op_type}_{k}`, k counting the nodes so named and passing over the names
    the graph already has. ONNX names nodes optionally and not uniquely, and exporters and hand
    edits leave nodes unnamed; the import names its artifact's nodes so (profiles match kernels by
    node name), and the graph's work, its component map and its uncounted nodes key nodes so."""
    nodes = list(model.graph.node)
    own = {node.name for node in nodes if node.name}
    names: list[str] = []
    seen: set[str] = set()
    made = 0
    for node in nodes:
        name = node.name
        if not name or name in seen:
            name = f"{node.op_type}_{made}"
            made += 1
            while name in own or name in seen:
                name = f"{node.op_type}_{made}"
                made += 1
        seen.add(name)
        names.append(name)
    return names


def node_work(model) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Per Conv, Gemm and MatMul node of a shape-inferred graph, by its `node_names` name,
    (multiply-adds, float32 bytes of its inputs and output), and the nodes among them whose
    shapes are not all known."""
    shapes = {v.name: _dims(v) for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]}
    shapes.update({w.name: list(w.dims) for w in model.graph.initializer})

    def known(name: str) -> list[int] | None:
        dims = shapes.get(name)
        return dims if dims is not None and all(isinstance(d, int) and d > 0 for d in dims) else None

    work, uncounted = {}, []
    for node, name in zip(model.graph.node, node_names(model)):
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        a, b, out = known(node.input[0]), known(node.input[1]), known(node.output[0])
        macs = None
        if node.op_type == "Conv" and b is not None and out is not None:
            macs = math.prod(out) * math.prod(b[1:])  # each output: C_in/groups x kernel multiply-adds
        elif node.op_type == "Gemm" and a is not None and b is not None:
            attrs = {attr.name: attr.i for attr in node.attribute}
            m, k = (a[1], a[0]) if attrs.get("transA") else (a[0], a[1])
            macs = m * k * (b[0] if attrs.get("transB") else b[1])
        elif node.op_type == "MatMul" and a is not None and out is not None:
            macs = math.prod(out) * a[-1]  # each output element: K multiply-adds
        if macs is None:
            uncounted.append(name)
            continue
        tensors = [known(t) for t in [*node.input, *node.output] if t]
        work[name] = (macs, 4 * sum(math.prod(t) for t in tensors if t is not None))
    return work, uncounted


def _shaped_work(model, path: Path, resolution: int | None):
    """(input name, static batch or None, resolution, `node_work` at the graph's batch (1 where
    symbolic) and that resolution, the nodes it could not count)."""
    input_name, batch, size = image_input(model, path, resolution)
    work, uncounted = node_work(fixed_shapes(model, input_name, batch or 1, size))
    return input_name, batch, size, work, uncounted


def graph_work_per_image(path: Path, resolution: int | None = None) -> tuple[dict[str, int], dict[str, int]]:
    """FLOPs (2 x multiply-adds) and bytes moved per image, per component (`component_map`) of the
    model in `path`, as `exporters/work.py` gives them for levit-bench's own models: the Conv, Gemm
    and MatMul work, each node's in its own component (the elementwise ops fused into it with it).
    The file's nodes and the imported artifact's are named alike (`node_names`), so the components
    are those its profile tells."""
    model = load_onnx(Path(path))
    _, batch, _, work, _ = _shaped_work(model, Path(path), resolution)
    nodes = component_map(model)["nodes"]
    flops: dict[str, int] = {}
    moved: dict[str, int] = {}
    for name, (macs, size_bytes) in work.items():
        component = nodes[name]["component"]
        flops[component] = flops.get(component, 0) + 2 * macs // (batch or 1)
        moved[component] = moved.get(component, 0) + size_bytes // (batch or 1)
    return flops, moved


def inspect_onnx(path: Path, resolution: int | None = None) -> ForeignOnnx:
    """What the protocol needs to know of the model in `path`, or a one-line refusal."""
    path = Path(path)
    model = load_onnx(path)
    if resolution is not None and resolution < 1:
        raise OnnxImportError(f"--resolution must be a positive integer, not {resolution}")
    input_name, batch, size, work, uncounted = _shaped_work(model, path, resolution)
    if not model.graph.output:
        raise OnnxImportError(f"{path.name} has no output")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return ForeignOnnx(
        path=path.resolve(), sha256=source_sha256(path), input_name=input_name,
        output_name=model.graph.output[0].name, batch=batch, resolution=size,
        params=sum(math.prod(w.dims) for w in model.graph.initializer if w.data_type in _FLOATS),
        macs=sum(macs for macs, _ in work.values()) // (batch or 1), uncounted=tuple(uncounted),
        opset=opset, op_histogram=op_histogram(model),
    )


_COMPUTE = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
# what runtimes fuse into the kernel of the Conv/Gemm/MatMul before it: a bias, a norm, an activation
_EPILOGUE = frozenset({"Add", "Sub", "Mul", "Div", "BatchNormalization", "Relu", "LeakyRelu", "PRelu", "Clip",
                       "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Gelu", "Erf", "Elu", "Selu", "Softplus"})


def component_map(model) -> dict:
    """Per node (by its `node_names` name), its op kind as its component (`layout` for data
    movement): a graph without module paths is told by what its kernels do. An elementwise op fed
    by a Conv, Gemm or MatMul (its bias or activation, which runtimes fuse into that kernel) counts
    with it."""
    made_by: dict[str, str] = {}
    nodes = {}
    for node, name in zip(model.graph.node, node_names(model)):
        component = op_kind(node.op_type)
        if node.op_type in _EPILOGUE and made_by.get(node.input[0] if node.input else "") in _COMPUTE:
            component = made_by[node.input[0]]
        made_by.update(dict.fromkeys(node.output, component))
        nodes[name] = {"op": node.op_type, "outputs": list(node.output), "path": None, "component": component}
    vocabulary = list(dict.fromkeys(n["component"] for n in nodes.values()))
    return {"vocabulary": [*vocabulary, OTHER], "nodes": nodes}
