"""INT8: `quantize` for onnxruntime and openvino, `run --precision int8` gated against the fp32
PyTorch model, `eval --precision int8` stored beside fp32, and the report's speed-up and top-1 change."""

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from levit_bench import cli
from levit_bench.exporters.parity import TOLERANCES
from levit_bench.exporters.quantize import files_sha256
from levit_bench.reports.compare import compare
from levit_bench.reports.dataset import accuracy_for
from levit_bench.reports.figures import _marker
from levit_bench.store import open_store
from levit_bench.reports.tables import precision_gains
from levit_bench.train import synth


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A small synthetic ImageFolder (10 classes): its train split calibrates, its val split evaluates."""
    root = tmp_path_factory.mktemp("int8") / "ds"
    synth.generate(synth.SynthOptions(root, classes=10, per_class=2, val_per_class=2, size=32, seed=3))
    return root


def _json(capsys, *args: str) -> dict | list:
    capsys.readouterr()
    assert cli.main(list(args)) == 0
    return json.loads(capsys.readouterr().out)


def _one_line_error(capsys, code: int) -> str:
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def _run_int8(work, runtime: str, capsys) -> tuple[int, dict]:
    capsys.readouterr()
    code = cli.main(["--workdir", str(work), "run", "--runtime", runtime, "--platform", "xeon", "--model",
                     "levit_128s", "--precision", "int8", "--protocol", "smoke", "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)[0] if out.strip() else {}


def _vnni() -> bool:
    """Whether this CPU has VNNI: without it (AVX2 only) OpenVINO's int8 kernels give levit_128s
    outputs that agree with fp32 on 12% of top-1s, which the trust gate must store failed."""
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    return "avx512_vnni" in flags or "avx_vnni" in flags


def test_quantize_and_run_int8_in_both_runtimes(workdir_with_artifact, images, capsys):
    work = workdir_with_artifact
    models = work / "models"
    fp32 = json.loads((models / "levit_128s.json").read_text())
    made = {
        "onnxruntime": _json(capsys, "--workdir", str(work), "quantize", "--model", "levit_128s", "--runtime",
                             "onnxruntime", "--calib-size", "16", "--json"),
        "openvino": _json(capsys, "--workdir", str(work), "quantize", "--model", "levit_128s", "--runtime",
                          "openvino", "--calib", str(images / "train"), "--calib-size", "19", "--json"),
    }
    assert made["onnxruntime"]["files"] == ["levit_128s.int8-onnxruntime.onnx"]
    assert made["openvino"]["files"] == ["levit_128s.int8-openvino.xml", "levit_128s.int8-openvino.bin"]
    assert made["onnxruntime"]["quantization"]["calibration"] == {
        "kind": "synthetic", "generator": "levit-bench data synth", "classes": 10, "seed": 0, "images": 16}
    assert made["openvino"]["quantization"]["calibration"]["kind"] == "directory"
    assert made["openvino"]["quantization"]["calibration"]["images"] == 16  # 19 rounded down to whole batches
    assert made["openvino"]["quantization"]["model_type"] == "TRANSFORMER"
    for runtime, sidecar in made.items():
        assert sidecar["precision"] == "int8" and sidecar["runtime"] == runtime
        assert sidecar["fp32"] == {"file": "levit_128s.onnx", "onnx_sha256": fp32["onnx_sha256"]}
        assert sidecar["weights"] == fp32["weights"]
        assert files_sha256([models / name for name in sidecar["files"]]) == sidecar["files_sha256"]
        assert json.loads((models / f"levit_128s.int8-{runtime}.json").read_text()) == sidecar
    graph = onnx.load(models / "levit_128s.int8-onnxruntime.onnx").graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("QuantizeLinear") > 50 and ops.count("DequantizeLinear") > 100

    statuses = {"onnxruntime": "ok", "openvino": "ok" if _vnni() else "failed"}
    for runtime, sidecar in made.items():
        code, record = _run_int8(work, runtime, capsys)
        if statuses[runtime] == "failed":  # measured, then refused by the gate: stored failed, with why
            assert code == 1 and record["status"] == "failed" and "top-1 agreement" in record["error"]
            continue
        assert code == 0 and record["status"] == "ok", record.get("error")
        assert record["precision"] == record["runtime_info"]["precision"] == "int8"
        assert record["artifact_sha256"] == sidecar["files_sha256"]
        assert record["tolerance"] == {"max_abs_diff": TOLERANCES["int8"].bound(record["max_abs_logit"]),
                                       "top1_agreement": TOLERANCES["int8"].top1_agreement}
        assert 0 < record["max_abs_diff"] <= record["tolerance"]["max_abs_diff"]
        assert record["top1_agreement"] >= 0.8
        assert record["runtime_info"]["details"]["quantization"]["calibration"] == sidecar["quantization"]["calibration"]
        assert record["peak_fraction"] is None  # the fp32 FMA peak does not bound int8 kernels
    if statuses["openvino"] == "ok":
        assert record["runtime_info"]["details"]["compute_kernels"]["int8"] > 60  # openvino: every Gemm and Conv
    # an int8 profile is told in the fp32 export's components: ORT's fused QDQ kernels map back
    profile = _json(capsys, "--workdir", str(work), "profile", "--model", "levit_128s", "--runtime", "onnxruntime",
                    "--platform", "xeon", "--precision", "int8", "--protocol", "smoke", "--json")
    shares = {c["name"]: c["share"] for c in profile["components"]}
    assert profile["precision"] == "int8" and shares["other"] < 0.15 and shares["stem"] > 0.05, shares
    stored = open_store(work).records()
    assert [(r["runtime"], r["precision"], r["status"]) for r in stored] == [
        ("onnxruntime", "int8", "ok"), ("openvino", "int8", statuses["openvino"])]
    assert {r["fp32_artifact_sha256"] for r in stored} == {fp32["onnx_sha256"]}

    # `compare --by precision` pairs an int8 cell with the fp32 cell of the file it was quantized from
    assert cli.main(["--workdir", str(work), "run", "--runtime", "onnxruntime", "--platform", "xeon", "--model",
                     "levit_128s", "--protocol", "smoke"]) == 0
    (row,) = compare(open_store(work).records(), "precision", "fp32", "int8")
    assert row["model"] == "levit_128s" and row["ratio"] > 0


def test_a_wrong_int8_artifact_that_vouches_for_itself_is_stored_failed(workdir_with_artifact, capsys):
    """int8's tolerance is loose, but the gate still catches a scrambled network: the sign of the
    largest int8 weight tensor flipped, the sidecar's sha256 stamped again."""
    work = workdir_with_artifact
    _json(capsys, "--workdir", str(work), "quantize", "--model", "levit_128s", "--runtime", "onnxruntime",
          "--calib-size", "16", "--json")
    path = work / "models" / "levit_128s.int8-onnxruntime.onnx"
    model = onnx.load(path)
    largest = max((t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8),
                  key=lambda t: len(t.raw_data))
    flipped = np.maximum(numpy_helper.to_array(largest), -127) * -1
    largest.CopyFrom(numpy_helper.from_array(flipped.astype(np.int8), largest.name))
    onnx.save(model, path)
    sidecar_path = path.with_suffix(".json")
    sidecar = json.loads(sidecar_path.read_text())
    sidecar["files_sha256"] = files_sha256([path])
    sidecar_path.write_text(json.dumps(sidecar))
    code, record = _run_int8(work, "onnxruntime", capsys)
    assert code == 1 and record["status"] == "failed"
    assert record["error"].startswith("outputs differ from PyTorch")
    assert record["artifact_sha256"] == sidecar["files_sha256"]  # the quantized file was measured, not redone


def test_eval_int8_is_stored_beside_fp32_and_the_report_shows_the_change(images, tmp_path, capsys):
    from levit_reference import randomise

    from levit_bench.models.checkpoints import read_checkpoint, save_weights
    from levit_bench.registry import get_spec

    weights = tmp_path / "levit_128s-10.safetensors"
    save_weights(randomise(get_spec("levit_128s").build(num_classes=10), seed=4), weights, "levit_128s")
    common = ["eval", "--model", "levit_128s", "--weights", str(weights), "--data", str(images / "val"),
              "--workers", "0", "--batch-size", "8", "--runtime", "onnxruntime", "--json"]
    fp32 = _json(capsys, *common)
    int8 = _json(capsys, *common, "--precision", "int8")
    assert (fp32["precision"], int8["precision"]) == ("fp32", "int8")
    assert int8["artifact"].endswith("levit_128s.int8-onnxruntime.onnx") and int8["images"] == 20
    assert "on 64 synthetic images" in int8["artifact_note"]  # quantized on demand, and it says so
    assert int8["weights_id"] == fp32["weights_id"] == read_checkpoint(str(weights)).sha256
    stored = open_store(tmp_path / "work").accuracy_records("levit_128s")
    assert [(r["runtime"], r["precision"]) for r in stored] == [("onnxruntime", "fp32"), ("onnxruntime", "int8")]

    wid = fp32["weights_id"]
    assert accuracy_for("levit_128s", wid, "onnxruntime", "int8", stored).top1 == int8["top1"]
    assert accuracy_for("levit_128s", wid, "onnxruntime", "fp32", stored).top1 == fp32["top1"]
    unevaluated = accuracy_for("levit_128s", wid, "openvino", "int8", stored)
    assert (unevaluated.top1, unevaluated.source) == (fp32["top1"], "measured-fp32")

    def point(precision: str, top1: float, speed: float) -> dict:
        record = {"mode": None, "round": None, "uid": precision, "samples_ms": [1000 * 16 / speed] * 5,
                  "batch": 16, "images_per_s": speed}
        return {"platform": "xeon", "host": "h", "host_label": "EPYC (h)", "model": "levit_128s",
                "runtime": "onnxruntime", "variant": "onnxruntime" + (" int8" if precision == "int8" else ""),
                "precision": precision, "batch": 16, "record": record, "cell_rounds": [record],
                "images_per_s": speed, "top1": top1, "top1_source": "measured", "noisy": False}

    (gain,) = precision_gains([point("fp32", fp32["top1"], 100.0), point("int8", int8["top1"], 170.0)])
    assert gain["speedup"] == pytest.approx(1.7)
    assert gain["top1_delta"] == pytest.approx(int8["top1"] - fp32["top1"])
    assert _marker("onnxruntime int8", {}) == "X" and _marker("openvino int8", {}) == "P"
    assert _marker("openvino bf16", {}) == "h" and _marker("onnxruntime", {}) == "s"


def test_missing_nncf_and_empty_calibration_are_one_line_and_write_nothing(workdir_with_artifact, tmp_path,
                                                                           monkeypatch, capsys):
    work = workdir_with_artifact
    before = sorted(p.name for p in (work / "models").iterdir())
    empty = tmp_path / "empty"
    (empty / "cat").mkdir(parents=True)
    (empty / "cat" / "notes.txt").write_text("not an image")
    code = cli.main(["--workdir", str(work), "quantize", "--model", "levit_128s", "--runtime", "onnxruntime",
                     "--calib", str(empty)])
    assert _one_line_error(capsys, code) == (f"levit-bench quantize: error: {empty} holds no images "
                                             "(.jpg, .jpeg, .png) to calibrate on")
    monkeypatch.setitem(sys.modules, "nncf", None)  # as if not installed
    code = cli.main(["--workdir", str(work), "quantize", "--model", "levit_128s", "--runtime", "openvino"])
    assert "nncf is not installed" in _one_line_error(capsys, code)
    for args, message in (
        (["run", "--runtime", "openvino", "--platform", "xeon", "--model", "levit_128s", "--precision", "int8"],
         "nncf is not installed"),
        (["run", "--runtime", "torch", "--platform", "xeon", "--model", "levit_128s", "--precision", "int8"],
         "torch on xeon runs fp32, not int8"),
        (["quantize", "--model", "levit_128s", "--runtime", "openvino", "--method", "entropy"],
         "NNCF has no entropy calibration"),
        (["eval", "--model", "levit_128s", "--weights", "w.pt", "--data", ".", "--precision", "int8"],
         "int8 is evaluated in onnxruntime or openvino or executorch (--runtime), not torch"),
    ):
        assert message in _one_line_error(capsys, cli.main(["--workdir", str(work), *args]))
    assert sorted(p.name for p in (work / "models").iterdir()) == before
    assert open_store(work).records() == []
