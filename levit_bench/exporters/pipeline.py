"""export: model name + weights -> DIR/NAME.onnx + DIR/NAME.json, verified or not written.

Steps: build (seeded random init, or a checkpoint), fold for inference, export, simplify,
check, map every node to its model component, stamp metadata, verify parity in ONNX Runtime,
then write both files atomically.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from levit_bench import environment, registry
from levit_bench.errors import LevitBenchError
from levit_bench.exporters import onnx_graph
from levit_bench.exporters.components import component_map, tensor_scopes
from levit_bench.exporters.fuse import fuse_for_inference
from levit_bench.exporters.parity import check_parity, fused_difference, seeded_images
from levit_bench.models.init import representative_init
from levit_bench.workdir import ensure_writable_dir, remove_stale_parts, write_atomic

DEFAULT_BATCH = 16  # the paper's CPU batch
EXPORT_PACKAGES = ("torch", "onnx", "onnxsim", "onnxruntime")


class ParityError(LevitBenchError):
    pass


@dataclass(frozen=True)
class ExportOptions:
    model: str
    out_dir: Path
    weights: str | None = None
    batch: int = DEFAULT_BATCH
    dynamic_batch: bool = False
    opset: int = onnx_graph.DEFAULT_OPSET
    simplify: bool = True
    seed: int = 0  # for random-init weights


@dataclass
class ExportResult:
    onnx_path: Path
    sidecar_path: Path
    sidecar: dict = field(default_factory=dict)


class _Timer:
    def __init__(self, on_step: Callable[[str], None]):
        self.on_step = on_step
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.on_step(name)
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 3)


def load_model(name: str, weights: str | None, seed: int = 0):
    """The unfused eval model and the record of its weights (a checkpoint, or a seeded init)."""
    if weights:
        model, loaded = registry.create_model(name, weights=weights)
        record = {"source": weights, "path": str(loaded.path.resolve()), "sha256": loaded.sha256,
                  "layout": loaded.layout, "dtype": loaded.dtype}
        return model, record
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, _ = registry.create_model(name)
    representative_init(model, seed)
    return model, {"source": "random-init", "seed": seed, "init": "representative"}


def model_from_sidecar(sidecar: dict):
    """Rebuild the exact unfused model an export was made from (its checkpoint, or its seed)."""
    weights = sidecar["weights"]
    if weights["source"] == "random-init":
        return load_model(sidecar["model"], None, weights["seed"])[0]
    model, record = load_model(sidecar["model"], weights["path"])
    if record["sha256"] != weights["sha256"]:
        raise LevitBenchError(
            f"{weights['path']} changed since {sidecar['model']} was exported from it "
            f"(sha256 {record['sha256'][:12]}, was {weights['sha256'][:12]}); export again"
        )
    return model


def export_model(options: ExportOptions, on_step: Callable[[str], None] = lambda step: None) -> ExportResult:
    """Run the whole export; nothing is written unless every check passes."""
    spec = registry.get_spec(options.model)
    if not options.dynamic_batch and options.batch < 1:
        raise LevitBenchError(f"--batch must be at least 1, got {options.batch}")
    onnx_graph.check_opset(options.opset)  # before the slow work, and before any directory is made
    out_dir = ensure_writable_dir(Path(options.out_dir))
    timer = _Timer(on_step)
    start = time.perf_counter()

    with timer.step("load"):
        model, weights = load_model(spec.name, options.weights, options.seed)
    with timer.step("fuse"):
        fused = fuse_for_inference(model)
        fused_vs_unfused = fused_difference(fused, model, spec.resolution)
    input_shape: list[int | str] = [
        onnx_graph.BATCH_AXIS if options.dynamic_batch else options.batch, 3, spec.resolution, spec.resolution
    ]
    example = seeded_images(2 if options.dynamic_batch else options.batch, spec.resolution)
    with timer.step("export"):
        proto = onnx_graph.export(fused, example, options.opset, options.dynamic_batch)
        scopes = tensor_scopes(proto)  # read before onnxsim, which drops node metadata
    if options.simplify:
        with timer.step("simplify"):
            proto = onnx_graph.simplify(proto)
    with timer.step("check"):
        onnx_graph.check(proto)
    components = component_map(proto, scopes, registry.family(spec.family).components)
    opset = onnx_graph.opset_of(proto)  # the file's own, so that metadata and sidecar cannot tell another
    versions = environment.package_versions()
    facts = {
        "model": spec.name,
        "weights": weights["source"],
        "weights_sha256": weights.get("sha256", f"random-init seed {options.seed}"),
        "input_shape": json.dumps(input_shape),
        "opset": opset,
        "exporter": onnx_graph.EXPORTER,
        "simplified": options.simplify,
        "fused": True,
        "version": versions["levit-bench"],
        **{f"{name}_version": versions[name] for name in ("torch", "onnx", "onnxsim")},
    }
    onnx_graph.set_metadata(proto, facts)
    data = onnx_graph.serialise(proto)
    with timer.step("verify"):
        parity = check_parity(data, model, spec.resolution, None if options.dynamic_batch else options.batch)
    if not parity.passed:
        raise ParityError(
            f"parity check failed for {spec.name}: max |diff| {parity.max_abs_diff:.3g} "
            f"(tolerance {parity.tolerance:.3g}), top-1 agreement {parity.top1_agreement:.4f} on "
            f"{parity.inputs} inputs; nothing written"
        )

    onnx_path, sidecar_path = out_dir / f"{spec.name}.onnx", out_dir / f"{spec.name}.json"
    for path in (onnx_path, sidecar_path):
        remove_stale_parts(out_dir, path.name)
    sidecar = {
        "model": spec.name,
        "family": spec.family,
        "weights": weights,
        "input_shape": input_shape,
        "input_name": onnx_graph.INPUT_NAME,
        "output_name": onnx_graph.OUTPUT_NAME,
        "dynamic_batch": options.dynamic_batch,
        "opset": opset,
        "exporter": onnx_graph.EXPORTER,
        "simplified": options.simplify,
        "op_histogram": onnx_graph.op_histogram(proto),
        "components": components,
        "parity": parity.as_dict(),
        "fused_vs_unfused": fused_vs_unfused,
        "preprocessing": {
            "resize": spec.preprocessing.resize, "crop": spec.preprocessing.crop,
            "interpolation": spec.preprocessing.interpolation,
            "mean": list(spec.preprocessing.mean), "std": list(spec.preprocessing.std),
        },
        "versions": {"levit-bench": versions["levit-bench"], **{p: versions[p] for p in EXPORT_PACKAGES}},
        "timings_s": {**timer.seconds, "total": round(time.perf_counter() - start, 3)},
        "onnx_file": onnx_path.name,
        "onnx_sha256": hashlib.sha256(data).hexdigest(),
        "onnx_bytes": len(data),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_atomic(onnx_path, data)
    write_atomic(sidecar_path, (json.dumps(sidecar, indent=2) + "\n").encode())
    return ExportResult(onnx_path, sidecar_path, sidecar)
