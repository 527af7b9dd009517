"""Your own ONNX image model, measured as levit-bench's own exports are (family `user`).

`register` makes the file a registry entry in this process (its counts from the graph,
`onnx_facts.py`); `import_onnx` puts it in the work directory as an artifact (one file, external
data read in, checked to run in ONNX Runtime) whose sidecar says it has no PyTorch model: the
trust gate then compares every runtime with ONNX Runtime fp32 (`reference: onnxruntime`).
`fix_batch` makes the copy of a symbolic-batch file that a run at one batch measures.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path


from levit_bench import registry
from levit_bench.errors import one_line
from levit_bench.exporters.onnx_facts import (ForeignOnnx, OnnxImportError, component_map, inspect_onnx,
                                             node_names)
from levit_bench.exporters.parity import PARITY_INPUTS, PARITY_SEED, Parity, onnxruntime_outputs, seeded_images
from levit_bench.workdir import write_atomic

USER_FAMILY = "user"
REFERENCE = "onnxruntime"  # what a user model's outputs are gated against
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.]*$")


def model_name(path: Path, name: str | None) -> str:
    """--name, or the file's stem, as a registry name (lower case, `_` for anything unusual)."""
    chosen = registry.normalise_name(name) if name else re.sub(r"[^a-z0-9_.]+", "_", path.stem.lower()).strip("_.")
    if not _NAME.match(chosen or ""):
        raise OnnxImportError(f"--name {name!r}: a model name is letters, digits, `_` and `.`" if name else
                              f"cannot make a model name of {path.name}: give --name NAME")
    return chosen


def register(info: ForeignOnnx, name: str) -> registry.ModelSpec:
    """The user model as a registry entry (in this process): family `user`, its counts from the graph."""
    existing = registry.REGISTRY.get(name)
    if existing is not None and existing.onnx is None:
        raise OnnxImportError(f"{name} is a registered model's name; give the ONNX file another --name")
    spec = registry.user_model_spec(name, str(info.path), info.resolution, info.params, info.macs)
    registry.unregister_model(name)
    registry.register_model(spec)
    return spec


def register_file(path: Path, name: str | None = None, resolution: int | None = None) -> registry.ModelSpec:
    info = inspect_onnx(path, resolution)
    return register(info, model_name(info.path, name))


def fix_batch(onnx_path: Path, sidecar: dict, batch: int, out_dir: Path) -> Path:
    """`out_dir/NAME.onnx`: the imported model with its symbolic batch set to `batch` wherever it
    appears (every runtime then compiles static shapes, as TVM must), and its sidecar."""
    import onnx

    model = onnx.load(str(onnx_path))
    symbol = next(i for i in model.graph.input if i.name == sidecar["input_name"]).type.tensor_type.shape.dim[0].dim_param
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if symbol and dim.dim_param == symbol:
                dim.Clear()
                dim.dim_value = batch
    data = model.SerializeToString()
    path = out_dir / sidecar["onnx_file"]
    static = {**sidecar, "input_shape": [batch, *sidecar["input_shape"][1:]], "dynamic_batch": False,
              "batch_fixed_from": sidecar["onnx_sha256"], "onnx_sha256": hashlib.sha256(data).hexdigest(),
              "onnx_bytes": len(data), "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)
    write_atomic(path.with_suffix(".json"), (json.dumps(static, indent=2) + "\n").encode())
    return path


def _preprocessing(spec: registry.Preprocessing) -> dict:
    return {"resize": spec.resize, "crop": spec.crop, "interpolation": spec.interpolation,
            "mean": list(spec.mean), "std": list(spec.std), "source": spec.source}


def _runs_in_onnxruntime(data: bytes, info: ForeignOnnx) -> Parity:
    """The file runs in ONNX Runtime, and its optimised graph computes what its plain graph
    does, on the seeded inputs every gate uses (static batch: whole batches)."""
    batch = info.batch or 16
    images = seeded_images(math.ceil(PARITY_INPUTS / batch) * batch, info.resolution).numpy()
    try:
        expected = onnxruntime_outputs(data, images, batch, optimise=False)
        actual = onnxruntime_outputs(data, images, batch)
    except Exception as e:  # noqa: BLE001 - ORT's own error types: an op it lacks, a shape it refuses
        raise OnnxImportError(f"{info.path.name}: ONNX Runtime cannot run it: {one_line(e)}") from None
    return Parity.of(expected, actual, "onnxruntime CPUExecutionProvider, graph optimisations off",
                     "onnxruntime CPUExecutionProvider, all graph optimisations", PARITY_SEED)


def import_onnx(info: ForeignOnnx, name: str, out_dir: Path) -> Path:
    """`out_dir/NAME.onnx` and its sidecar, unless they already hold this very file; refused in
    one line if ONNX Runtime cannot run it."""
    import onnx

    onnx_path, sidecar_path = out_dir / f"{name}.onnx", out_dir / f"{name}.json"
    try:
        current = json.loads(sidecar_path.read_text())
        if current.get("source_onnx", {}).get("sha256") == info.sha256 and onnx_path.is_file() \
                and hashlib.sha256(onnx_path.read_bytes()).hexdigest() == current["onnx_sha256"]:
            return onnx_path
    except (OSError, ValueError, AttributeError, KeyError):
        pass
    model = onnx.load(str(info.path))  # external data read in: the artifact is one file
    for node, node_name in zip(model.graph.node, node_names(model)):  # profiles match kernels by name
        node.name = node_name
    try:
        data = model.SerializeToString()
    except ValueError as e:  # protobuf's 2 GB limit
        raise OnnxImportError(f"{info.path.name} does not fit one ONNX file: {one_line(e)}") from None
    parity = _runs_in_onnxruntime(data, info)
    source = {"path": str(info.path), "sha256": info.sha256}
    sidecar = {
        "model": name,
        "family": USER_FAMILY,
        "reference": REFERENCE,
        "source_onnx": source,
        "weights": {"source": "onnx", **source, "layout": "onnx"},
        "input_shape": [info.batch or "batch", 3, info.resolution, info.resolution],
        "input_name": info.input_name,
        "output_name": info.output_name,
        "dynamic_batch": info.batch is None,
        "opset": info.opset,
        "params": info.params,
        "macs": info.macs,
        "macs_uncounted_nodes": list(info.uncounted),
        "op_histogram": info.op_histogram,
        "components": component_map(model),
        "parity": parity.as_dict(),
        "preprocessing": _preprocessing(registry.get_spec(name).preprocessing),
        "onnx_file": onnx_path.name,
        "onnx_sha256": hashlib.sha256(data).hexdigest(),
        "onnx_bytes": len(data),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(onnx_path, data)
    write_atomic(sidecar_path, (json.dumps(sidecar, indent=2) + "\n").encode())
    return onnx_path
