"""The exported file a run measures: found in the work directory, or exported on demand.

`<workdir>/models/NAME.onnx` (what `levit-bench export` writes by default) is used when its
batch matches the run's (or is symbolic); otherwise a run keeps its own export per batch in
`<workdir>/models/batch-<N>/` (`batch-dynamic/` for the GPU's searched batch). An int8 run
measures the fp32 artifact's quantized twin for its runtime, beside it (exporters/quantize.py),
quantized on demand with the defaults when there is none made from that very fp32 file. A
user's ONNX model (`--onnx`) is never exported: its file is imported as `NAME.onnx` (again
whenever its bytes change), and a static batch in it is the only batch it runs.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from levit_bench.errors import LevitBenchError
from levit_bench.exporters.onnx_facts import inspect_onnx, source_sha256
from levit_bench.exporters.onnx_import import fix_batch, import_onnx
from levit_bench.exporters.pipeline import ExportOptions, export_model, model_from_sidecar
from levit_bench.exporters.quantize import (
    QuantizeOptions, QuantizeResult, calibration_batch, check_tools, files_sha256, quantize, sidecar_path,
)
from levit_bench.models.checkpoints import read_checkpoint, sha256_of
from levit_bench.registry import ModelSpec, get_spec
from levit_bench.train.calibration import calibration_images


class DamagedArtifact(LevitBenchError):
    """The default artifact is damaged and nothing can say which weights to export it from."""


@dataclass(frozen=True)
class Artifact:
    model: str
    onnx_path: Path
    sidecar: dict
    note: str | None = None  # what finding it took that the user should hear of (a repair)

    @property
    def sha256(self) -> str:
        """Of the file a runtime loads (all of them, for an OpenVINO IR)."""
        return self.sidecar.get("files_sha256") or self.sidecar["onnx_sha256"]

    @property
    def precision(self) -> str:
        return self.sidecar.get("precision", "fp32")

    @property
    def batch(self) -> int | None:
        """The static batch, or None for a symbolic batch axis."""
        first = self.sidecar["input_shape"][0]
        return first if isinstance(first, int) else None

    @property
    def resolution(self) -> int:
        return self.sidecar["input_shape"][-1]

    @property
    def weights(self) -> dict:
        return self.sidecar["weights"]

    @functools.cached_property
    def reference_model(self) -> nn.Module:
        """The unfused eval model the artifact was exported from, built once per artifact and
        shared by whoever needs it in this process (the torch runner, the parity reference):
        treat it as read-only."""
        return model_from_sidecar(self.sidecar)


def _sidecar(onnx_path: Path) -> dict | None:
    try:
        sidecar = json.loads(onnx_path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    return sidecar if isinstance(sidecar, dict) and "onnx_sha256" in sidecar else None


def _load(onnx_path: Path) -> Artifact | None:
    """The artifact at `onnx_path` if its sidecar exists and vouches for the file's bytes."""
    sidecar = _sidecar(onnx_path)
    if sidecar is None or not onnx_path.is_file():
        return None
    if hashlib.sha256(onnx_path.read_bytes()).hexdigest() != sidecar["onnx_sha256"]:
        return None
    return Artifact(sidecar["model"], onnx_path, sidecar)


def _repair_default(models_dir: Path, model: str, on_step: Callable[[str], None]) -> Artifact:
    """Export the default artifact again, with the weights and batch its sidecar records.

    A default whose bytes fail their sha256 must not be replaced by a random-init export: the
    runs after it would measure another network. Without a readable sidecar, or with its
    checkpoint gone or changed, nothing can say which weights it held: refuse.
    """
    path = models_dir / f"{model}.onnx"
    sidecar = _sidecar(path)
    redo = f"export it again: levit-bench export --model {model} [--weights CHECKPOINT]"
    if sidecar is None:
        raise DamagedArtifact(f"{path} is damaged and its sidecar is unreadable, so its weights are unknown; {redo}")
    weights = sidecar.get("weights") or {}
    shape = sidecar.get("input_shape") or [None]
    options = ExportOptions(model=model, out_dir=models_dir, batch=shape[0] if isinstance(shape[0], int) else 1,
                            dynamic_batch=not isinstance(shape[0], int))
    if weights.get("source") == "random-init":
        options = dataclasses.replace(options, seed=int(weights.get("seed", 0)))
        origin = f"random init, seed {options.seed}"
    else:
        checkpoint = Path(weights.get("path", ""))
        if not checkpoint.is_file() or sha256_of(checkpoint) != weights.get("sha256"):
            raise DamagedArtifact(f"{path} is damaged and the checkpoint it was exported from "
                                  f"({checkpoint}) is gone or changed; {redo}")
        options = dataclasses.replace(options, weights=str(checkpoint))
        origin = str(checkpoint)
    result = export_model(options, on_step=lambda step: on_step(f"re-export {step}"))
    note = f"{path} failed its sha256 check; exported it again from the same weights ({origin})"
    return Artifact(model, result.onnx_path, result.sidecar, note)


def _batch_dir(models_dir: Path, batch: int | None) -> Path:
    return models_dir / (f"batch-{batch}" if batch else "batch-dynamic")


def _fits(artifact: Artifact | None, batch: int | None, weights_sha256: str | None) -> bool:
    if artifact is None:
        return False
    batch_ok = artifact.batch is None if batch is None else artifact.batch in (batch, None)
    weights_ok = weights_sha256 is None or artifact.weights.get("sha256") == weights_sha256
    return batch_ok and weights_ok


def find_artifact(workdir: Path, model: str, batch: int | None, weights_sha256: str | None = None) -> Artifact | None:
    """The artifact a run of `model` at `batch` measures, if it is there (a user's ONNX model at a
    batch: its copy fixed to that batch, `_user_artifact`)."""
    models_dir = workdir / "models"
    candidates = [models_dir / f"{model}.onnx", _batch_dir(models_dir, batch) / f"{model}.onnx"]
    if batch is not None and get_spec(model).onnx is not None:
        candidates.reverse()
    for candidate in candidates:
        artifact = _load(candidate)
        if _fits(artifact, batch, weights_sha256):
            return artifact
    return None


def ensure_artifact(
    workdir: Path, model: str, batch: int | None, weights: str | None = None,
    on_step: Callable[[str], None] = lambda step: None,
) -> Artifact:
    """An artifact for `model` at `batch` (None: symbolic), exporting it if there is none.

    With `weights`, an artifact made from other weights does not count. Without, a new export
    takes the weights of the default artifact when there is one, so every batch of a model
    measures the same network.
    """
    spec = get_spec(model)
    if spec.onnx is not None:
        return _user_artifact(workdir, spec, batch, weights)
    weights_sha256 = read_checkpoint(weights).sha256 if weights else None
    models_dir = workdir / "models"
    default_path = models_dir / f"{model}.onnx"
    default = _load(default_path)
    note = None
    if default is None and (default_path.exists() or default_path.with_suffix(".json").exists()):
        default = _repair_default(models_dir, model, on_step)
        note = default.note
    found = find_artifact(workdir, model, batch, weights_sha256)
    if found is not None:
        return dataclasses.replace(found, note=note)
    seed = 0
    if weights is None and default is not None:
        if default.weights["source"] == "random-init":
            seed = default.weights["seed"]
        else:
            weights = default.weights["path"]
    out_dir = models_dir if not default_path.exists() else _batch_dir(models_dir, batch)
    options = ExportOptions(model=model, out_dir=out_dir, weights=weights, batch=batch or 1,
                            dynamic_batch=batch is None, seed=seed)
    result = export_model(options, on_step=lambda step: on_step(f"export {step}"))
    return Artifact(model, result.onnx_path, result.sidecar, note)


def _user_artifact(workdir: Path, spec: ModelSpec, batch: int | None, weights: str | None) -> Artifact:
    """A user's ONNX model as imported into the work directory (imported first if it is not there
    with these very bytes), at `batch`: a symbolic batch is fixed to it in a copy of its own."""
    if weights:
        raise LevitBenchError(f"{spec.name} is an ONNX file, which holds its own weights: --weights does not apply")
    source = Path(spec.onnx)
    if not source.is_file():
        raise LevitBenchError(f"{spec.name}'s ONNX file is gone: {source}")
    artifact = _load(workdir / "models" / f"{spec.name}.onnx")
    if artifact is None or artifact.sidecar.get("source_onnx", {}).get("sha256") != source_sha256(source):
        artifact = _load(import_onnx(inspect_onnx(source, spec.resolution), spec.name, workdir / "models"))
    if batch is not None and artifact.batch is None:
        static = _load(_batch_dir(workdir / "models", batch) / f"{spec.name}.onnx")
        if static is None or static.sidecar.get("batch_fixed_from") != artifact.sha256:
            static = _load(fix_batch(artifact.onnx_path, artifact.sidecar, batch, _batch_dir(workdir / "models", batch)))
        return static
    if not _fits(artifact, batch, None):
        searched = " (the gpu platform searches the batch, which needs a symbolic one)" if batch is None else ""
        raise LevitBenchError(f"{source.name} has a fixed batch of {artifact.batch}, not {batch or 'a searched one'}: "
                              f"measure it with --batch {artifact.batch}{searched}")
    return artifact


def find_quantized(artifact: Artifact, runtime: str) -> Artifact | None:
    """The int8 twin of `artifact` for `runtime`, if one was quantized from these very bytes and
    its files are whole."""
    path = sidecar_path(artifact.onnx_path, artifact.model, runtime)
    try:
        sidecar = json.loads(path.read_text())
        files = [path.with_name(name) for name in sidecar["files"]]
        if sidecar["fp32"]["onnx_sha256"] != artifact.sha256 or files_sha256(files) != sidecar["files_sha256"]:
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return Artifact(artifact.model, files[0], sidecar)


def quantize_artifact(artifact: Artifact, options: QuantizeOptions,
                      on_step: Callable[[str], None] = lambda step: None) -> QuantizeResult:
    """Quantize `artifact` as `options` say, on the calibration images they name."""
    check_tools(options)
    on_step("calibration images")
    calibration = calibration_images(get_spec(artifact.model), options.calib, options.calib_size,
                                     calibration_batch(artifact.sidecar), options.seed)
    return quantize(artifact.onnx_path, artifact.sidecar, options, calibration.images, calibration.source, on_step)


def ensure_quantized(artifact: Artifact, runtime: str, on_step: Callable[[str], None] = lambda step: None) -> Artifact:
    """`artifact`'s int8 twin for `runtime`, quantized with the defaults (synthetic calibration
    images) when there is none; `levit-bench quantize` makes one from chosen images."""
    found = find_quantized(artifact, runtime)
    if found is not None:
        return dataclasses.replace(found, note=artifact.note)
    options = QuantizeOptions(runtime=runtime)
    result = quantize_artifact(artifact, options, on_step=lambda step: on_step(f"int8: {step}"))
    note = (f"quantized {artifact.model} for {runtime} on {options.calib_size} synthetic images "
            "(levit-bench quantize --calib DIR calibrates on your own)")
    return Artifact(artifact.model, result.path, result.sidecar, "; ".join(filter(None, (artifact.note, note))))
