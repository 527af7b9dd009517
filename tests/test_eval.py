"""`levit-bench eval`: the same weights in PyTorch and in exported runtimes, stored with their id."""

import json
import shutil

import pytest

from levit_bench.cli import main
from levit_bench.models.checkpoints import read_checkpoint, save_weights, weights_id
from levit_bench.registry import get_spec
from levit_bench.store import open_store
from levit_bench.store.schema import ACCURACY_COLUMNS
from levit_bench.train import synth


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """10 classes x 2 validation images (small: eval resizes them to 224), and 10-class weights."""
    from levit_reference import randomise

    root = tmp_path_factory.mktemp("eval")
    synth.generate(synth.SynthOptions(root / "ds", classes=10, per_class=1, val_per_class=2, size=32, seed=1))
    weights = root / "levit_128s-10.safetensors"
    save_weights(randomise(get_spec("levit_128s").build(num_classes=10), seed=4), weights, "levit_128s")
    return root / "ds" / "val", weights


def _eval(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main(["eval", "--model", "levit_128s", "--workers", "0", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_torch_and_exported_runtimes_agree_and_land_in_the_store(synthetic, tmp_path, capsys):
    data, weights = synthetic
    common = ("--weights", str(weights), "--data", str(data), "--batch-size", "8")  # 20 images: 8, 8, 4 padded
    torch_record = _eval(capsys, *common)
    ort_record = _eval(capsys, *common, "--runtime", "onnxruntime")
    records = [torch_record, ort_record]
    if _has("openvino"):  # reuses the batch-8 artifact just exported
        records.append(_eval(capsys, *common, "--runtime", "openvino"))
    sha256 = read_checkpoint(str(weights)).sha256
    sidecar = json.loads((tmp_path / "work" / "models" / "levit_128s.json").read_text())
    assert sidecar["input_shape"][0] == 8 and weights_id(sidecar["weights"]) == sha256
    assert ort_record["artifact_sha256"] == sidecar["onnx_sha256"]
    for record in records:
        assert set(ACCURACY_COLUMNS) <= set(record)
        assert record["weights_id"] == sha256 and record["precision"] == "fp32"
        assert record["images"] == record["dataset_images"] == 20 and record["dataset_classes"] == 10
        assert record["dataset"] == str(data.resolve())
        assert (record["correct_top1"], record["correct_top5"]) == (torch_record["correct_top1"],
                                                                    torch_record["correct_top5"]), record["runtime"]
        assert record["top1"] == pytest.approx(100 * record["correct_top1"] / 20)
    assert torch_record["top5"] >= torch_record["top1"]
    stored = open_store(tmp_path / "work").accuracy_records("levit_128s")
    assert [r["uid"] for r in stored] == [r["uid"] for r in records]
    assert [r["runtime"] for r in stored] == ["torch", "onnxruntime", "openvino"][:len(records)]


def test_limit_spreads_over_classes_and_prints_a_table(synthetic, tmp_path, capsys):
    data, weights = synthetic
    assert main(["eval", "--model", "levit_128s", "--weights", str(weights), "--data", str(data),
                 "--workers", "0", "--limit", "10"]) == 0
    out = capsys.readouterr().out
    assert "top-1" in out and "20 images, 10 evaluated" in out
    (record,) = open_store(tmp_path / "work").accuracy_records()
    assert record["images"] == 10 and record["limit"] == 10


def test_class_count_mismatch_is_one_line_and_stores_nothing(synthetic, tmp_path, capsys):
    data, weights = synthetic
    few = tmp_path / "few"
    for name in sorted(p.name for p in data.iterdir())[:3]:
        shutil.copytree(data / name, few / name)
    capsys.readouterr()
    code = main(["eval", "--model", "levit_128s", "--weights", str(weights), "--data", str(few), "--workers", "0"])
    assert code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("levit-bench eval: error: ") and "has 3 classes" in lines[0] and "10 outputs" in lines[0]
    assert not (tmp_path / "work" / "results.db").exists() or open_store(tmp_path / "work").accuracy_records() == []


def test_bad_input_is_one_line(synthetic, tmp_path, capsys):
    data, weights = synthetic
    for args, message in (
        (["--weights", str(tmp_path / "missing.pth"), "--data", str(data)], "weights file not found"),
        (["--weights", str(weights), "--data", str(tmp_path / "nothing")], "dataset directory not found"),
        (["--weights", str(weights), "--data", str(data), "--batch-size", "0"], "--batch-size must be at least 1"),
    ):
        capsys.readouterr()
        assert main(["eval", "--model", "levit_128s", "--workers", "0", *args]) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
