"""quantize: an exported fp32 artifact -> its post-training static INT8 twin for one runtime.

Each runtime quantizes with its own tool, as its users would:

- ONNX Runtime: `quant_pre_process`, then `quantize_static` to QDQ, per-channel int8 weights
  in 7 bits (`reduce_range`, for CPUs without VNNI: below), every argument explicit (their
  defaults moved between releases). Before that the residual
  adds the export folds into Gemms (`torch.addmm`, models/levit_fused.py) are split out again:
  ORT's QGemm needs a constant C, so a Gemm whose C is the residual stream stays fp32
  (microsoft/onnxruntime#11961), which left 20 of levit_128s's 67 Gemms unquantized.
- OpenVINO: NNCF's `nncf.quantize` on the OpenVINO model, preset MIXED, CPU target,
  `ModelType.TRANSFORMER` for the attention families, saved as IR (fp32 where not int8).
  SmoothQuant, which TRANSFORMER turns on, is turned off: on LeViT it moved the logits 16x
  further from fp32 (max |diff| 0.059 against 0.0037) for no speed.

ONNX Runtime's weights are in 7 bits because a file must run right on every x86 CPU: on one
without VNNI (AVX2 only), its uint8 x int8 kernels sum pairs of products in int16, which
full-range weights overflow; levit_128s's int8 outputs then agreed with fp32 on no top-1 (max
|diff| 5.9). OpenVINO's int8 kernels on such a CPU are wrong too (top-1 agreement 0.12, max
|diff| 2.5, with NNCF's overflow fix on every layer or not): the trust gate stores those runs
failed.

Files, beside the fp32 artifact: NAME.int8-RUNTIME.onnx (or .xml + .bin) and its sidecar
NAME.int8-RUNTIME.json, which names the fp32 file it came from (its sha256), the method and
the calibration set; the sidecar is written last, so it vouches only for whole files.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from levit_bench import environment, registry
from levit_bench.errors import LevitBenchError
from levit_bench.exporters.pipeline import DEFAULT_BATCH
from levit_bench.workdir import remove_stale_parts, write_atomic

QUANTIZERS = ("onnxruntime", "openvino")
METHODS = ("minmax", "entropy", "percentile")
ACTIVATIONS = ("uint8", "int8")
DEFAULT_CALIB_SIZE = 64


class QuantizeError(LevitBenchError):
    pass


@dataclass(frozen=True)
class QuantizeOptions:
    runtime: str
    calib: Path | None = None  # None: drawn synthetic images (train/calibration.py reads them)
    calib_size: int = DEFAULT_CALIB_SIZE
    per_channel: bool = True
    method: str = "minmax"
    activations: str | None = None  # onnxruntime: uint8 (default) or int8; openvino: NNCF's preset decides
    seed: int = 0  # of the synthetic calibration images

    def __post_init__(self):
        """Refuse, in one line, what no quantizer could follow (before anything is read)."""
        if self.runtime not in QUANTIZERS:
            raise QuantizeError(f"int8 is quantized for {', '.join(QUANTIZERS)}, not {self.runtime}")
        if self.method not in METHODS:
            raise QuantizeError(f"--method is one of {', '.join(METHODS)}, not {self.method}")
        if self.calib_size < 1:
            raise QuantizeError(f"--calib-size must be at least 1, got {self.calib_size}")
        if self.activations is not None and self.activations not in ACTIVATIONS:
            raise QuantizeError(f"--activations is one of {', '.join(ACTIVATIONS)}, not {self.activations}")
        if self.runtime == "openvino" and self.method == "entropy":
            raise QuantizeError("NNCF has no entropy calibration: use --method minmax or percentile for openvino")
        if self.runtime == "openvino" and self.activations is not None:
            raise QuantizeError("--activations applies to onnxruntime; NNCF's MIXED preset sets openvino's (uint8)")

    def describe(self) -> dict:
        return {"method": self.method, "weights": "int8 " + ("per-channel" if self.per_channel else "per-tensor"),
                "activations": self.activations or "uint8"}


@dataclass
class QuantizeResult:
    path: Path  # the file a runtime loads (.onnx, or the IR's .xml)
    sidecar_path: Path
    sidecar: dict


def stem(model: str, runtime: str) -> str:
    return f"{model}.int8-{runtime}"


def sidecar_path(fp32_onnx: Path, model: str, runtime: str) -> Path:
    return fp32_onnx.with_name(stem(model, runtime) + ".json")


def files_sha256(paths: list[Path]) -> str:
    """One digest over the files in order (an IR is its .xml and its .bin)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _residual_adds_apart(model):
    """Every Gemm whose C input is computed (a residual stream), as Gemm + Add."""
    from onnx import helper

    constants = {init.name for init in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        beta = next((a.f for a in node.attribute if a.name == "beta"), 1.0)
        if node.op_type != "Gemm" or len(node.input) < 3 or node.input[2] in constants or beta != 1.0:
            nodes.append(node)
            continue
        product = node.output[0] + "/product"
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name != "beta"}
        nodes.append(helper.make_node("Gemm", list(node.input[:2]), [product], name=node.name, **attributes))
        nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=node.name + "/residual"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def _onnxruntime(source: Path, out_dir: Path, name: str, input_name: str, batches: list[np.ndarray],
                 options: QuantizeOptions) -> tuple[list[Path], dict]:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{input_name: batch} for batch in batches])

        def get_next(self):
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory() as tmp:
        split, prepared = Path(tmp) / "split.onnx", Path(tmp) / "prepared.onnx"
        onnx.save(_residual_adds_apart(onnx.load(str(source))), str(split))
        quant_pre_process(str(split), str(prepared), skip_optimization=False, skip_onnx_shape=False,
                          skip_symbolic_shape=True)
        symmetric = options.activations == "int8"
        out = out_dir / f"{name}.onnx"
        quantize_static(
            str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=options.per_channel,
            reduce_range=True, weight_type=QuantType.QInt8,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                              "percentile": CalibrationMethod.Percentile}[options.method],
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
        )
    return [out], {"tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
                   "residual_adds": "split out of the Gemms (ORT's QGemm needs a constant C)",
                   "reduce_range": True}


def _import_nncf():
    try:
        import nncf
    except ImportError:
        raise QuantizeError("nncf is not installed, so openvino cannot be quantized "
                            "(pip install 'levit-bench[quantize]')") from None
    return nncf


def _openvino(source: Path, out_dir: Path, name: str, batches: list[np.ndarray], options: QuantizeOptions,
              attention: bool) -> tuple[list[Path], dict]:
    nncf = _import_nncf()
    import openvino
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters, AdvancedSmoothQuantParameters, QuantizationParameters,
    )
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    advanced = AdvancedQuantizationParameters(
        smooth_quant_alphas=AdvancedSmoothQuantParameters(convolution=-1, matmul=-1),  # off: see the module docs
        weights_quantization_params=None if options.per_channel else QuantizationParameters(per_channel=False),
        activations_range_estimator_params=(RangeEstimatorParametersSet.MEAN_QUANTILE
                                            if options.method == "percentile" else RangeEstimatorParametersSet.MINMAX),
    )
    model_type = nncf.ModelType.TRANSFORMER if attention else None
    logging.getLogger("nncf").setLevel(logging.ERROR)
    quantized = nncf.quantize(openvino.Core().read_model(str(source)), nncf.Dataset(batches),
                              preset=nncf.QuantizationPreset.MIXED, target_device=nncf.TargetDevice.CPU,
                              model_type=model_type, subset_size=len(batches), fast_bias_correction=True,
                              advanced_parameters=advanced)
    xml = out_dir / f"{name}.xml"
    openvino.save_model(quantized, str(xml), compress_to_fp16=False)
    return [xml, xml.with_suffix(".bin")], {
        "tool": "nncf.quantize", "format": "OpenVINO IR", "preset": "MIXED", "target_device": "CPU",
        "model_type": "TRANSFORMER" if attention else None, "smooth_quant": False,
    }


def calibration_batch(fp32_sidecar: dict) -> int:
    """The batch calibration images come in: the export's static batch, else the default one."""
    first = fp32_sidecar["input_shape"][0]
    return first if isinstance(first, int) else DEFAULT_BATCH


def check_tools(options: QuantizeOptions) -> None:
    """Refuse in one line, before any image is read, when the runtime's quantizer is missing."""
    if options.runtime == "openvino":
        _import_nncf()


def quantize(fp32_onnx: Path, fp32_sidecar: dict, options: QuantizeOptions, images: np.ndarray,
             calibration_source: dict, on_step: Callable[[str], None] = lambda step: None) -> QuantizeResult:
    """Quantize the artifact at `fp32_onnx` for `options.runtime`, calibrated on `images` (whole
    batches of `calibration_batch`, preprocessed; `calibration_source` says what they are, for the
    sidecar). Nothing is written on failure."""
    start = time.perf_counter()
    spec = registry.get_spec(fp32_sidecar["model"])
    batch = calibration_batch(fp32_sidecar)
    batches = [images[i:i + batch] for i in range(0, len(images) - batch + 1, batch)]
    if not batches:
        raise QuantizeError(f"{len(images)} calibration images make no batch of {batch}")
    on_step(f"quantize ({len(batches) * batch} calibration images)")
    name = stem(spec.name, options.runtime)
    out_dir = fp32_onnx.parent
    # the quantizers print progress (NNCF's bars, ORT's calibration notes); the caller shows its own
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{name}.", suffix=".part") as tmp, \
            contextlib.redirect_stdout(io.StringIO()):
        if options.runtime == "onnxruntime":
            made, tool = _onnxruntime(fp32_onnx, Path(tmp), name, fp32_sidecar["input_name"], batches, options)
        else:
            made, tool = _openvino(fp32_onnx, Path(tmp), name, batches, options, registry.family(spec.family).attention)
        files = [out_dir / path.name for path in made]
        sidecar_file = sidecar_path(fp32_onnx, spec.name, options.runtime)
        for path in (*files, sidecar_file):
            remove_stale_parts(out_dir, path.name)
        versions = environment.package_versions()
        sidecar = {
            "model": spec.name,
            "family": spec.family,
            "precision": "int8",
            "runtime": options.runtime,
            "weights": fp32_sidecar["weights"],
            "input_shape": fp32_sidecar["input_shape"],
            "input_name": fp32_sidecar["input_name"],
            "output_name": fp32_sidecar["output_name"],
            "dynamic_batch": fp32_sidecar["dynamic_batch"],
            "preprocessing": fp32_sidecar["preprocessing"],
            "fp32": {"file": fp32_onnx.name, "onnx_sha256": fp32_sidecar["onnx_sha256"]},
            "quantization": {**options.describe(), **tool, "calibration": calibration_source},
            "versions": {"levit-bench": versions["levit-bench"],
                         **{p: versions[p] for p in ("onnxruntime", "openvino", "nncf") if versions.get(p)}},
            "files": [path.name for path in files],
            "files_sha256": files_sha256(made),
            "timings_s": {"total": round(time.perf_counter() - start, 3)},
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        for path in made:
            write_atomic(out_dir / path.name, path.read_bytes())
    write_atomic(sidecar_file, (json.dumps(sidecar, indent=2) + "\n").encode())
    return QuantizeResult(files[0], sidecar_file, sidecar)
