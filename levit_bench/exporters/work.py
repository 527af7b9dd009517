"""The work of one image through a model as it is exported (BatchNorm folded): FLOPs and an
estimate of bytes moved, per component of its family. What profiles divide by and what a
roofline places a model at; counted on the meta device, so it costs no compute. A user's ONNX
model is counted from its graph (`onnx_facts.graph_work_per_image`)."""

from __future__ import annotations

import functools
from pathlib import Path

from levit_bench import registry
from levit_bench.exporters.fuse import fuse_for_inference
from levit_bench.exporters.onnx_facts import graph_work_per_image
from levit_bench.models.counting import component_bytes, component_flops


def work_per_image(model: str, batch: int = 1) -> tuple[dict[str, int], dict[str, int]]:
    """FLOPs and (estimated) bytes moved per image of a batch of `batch`, per component."""
    spec = registry.get_spec(model)
    return _work(spec.name, spec.onnx, spec.resolution, spec.counts, batch)


@functools.lru_cache(maxsize=None)
def _work(model: str, onnx: str | None, resolution: int, counts: tuple | None,
          batch: int) -> tuple[dict[str, int], dict[str, int]]:
    """Counted once per model as registered: a name given to another ONNX file (a notebook
    registering a second file under the same name) is counted again."""
    spec = registry.get_spec(model)
    if spec.onnx is not None:
        return graph_work_per_image(Path(spec.onnx), spec.resolution)
    built, _ = registry.create_model(spec.name)
    folded, rules = fuse_for_inference(built), registry.family(spec.family).components
    return component_flops(folded, spec.resolution, rules), component_bytes(folded, spec.resolution, rules, batch)
