"""Your own ONNX model (`--onnx FILE`): read from its graph, measured, gated against ONNX Runtime, stored, drawn."""

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from levit_bench.exporters.onnx_facts import OnnxImportError, inspect_onnx
from levit_bench.models.counting import count_macs, count_parameters

RESOLUTION = 32


class TinyNet(nn.Module):
    """Conv, grouped conv, pooling, a Linear and a MatMul: every op the MAC count knows."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2), nn.ReLU())
        self.head = nn.Linear(16, 10)
        self.mix = nn.Parameter(torch.randn(10, 10) * 0.1)

    def forward(self, x):
        logits = self.head(self.features(x).mean(dim=(2, 3)))
        return logits + logits @ self.mix


def _export(path: Path, dynamic_batch: bool = True) -> Path:
    torch.manual_seed(0)
    model = TinyNet().eval()
    shapes = ({0: torch.export.Dim("batch", min=1, max=1024)},) if dynamic_batch else None
    torch.onnx.export(model, (torch.randn(2, 3, RESOLUTION, RESOLUTION),), str(path), dynamo=True, verbose=False,
                      input_names=["pixels"], output_names=["scores"], dynamic_shapes=shapes)
    return path


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    return _export(tmp_path_factory.mktemp("user") / "tiny_net.onnx")


def test_the_graph_gives_input_params_and_macs(tiny_onnx, tmp_path):
    info = inspect_onnx(tiny_onnx)
    assert (info.input_name, info.output_name, info.batch, info.resolution) == ("pixels", "scores", None, RESOLUTION)
    # the counts of the graph equal those of the PyTorch module it was exported from (FlopCounterMode)
    assert info.params == count_parameters(TinyNet())
    assert info.macs == count_macs(TinyNet(), RESOLUTION) and not info.uncounted
    static = inspect_onnx(_export(tmp_path / "static.onnx", dynamic_batch=False))
    assert static.batch == 2 and static.macs == info.macs  # per image, whatever the batch


def _graph(path: Path, inputs: list, nodes: list, output) -> Path:
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, [output]), opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, str(path))
    return path


def test_what_is_not_a_single_input_image_model_is_refused_in_one_line(tmp_path):
    garbage = tmp_path / "notes.onnx"
    garbage.write_text("not a model")
    with pytest.raises(OnnxImportError, match=r"^.*notes.onnx is not an ONNX model: DecodeError: "):
        inspect_onnx(garbage)
    image = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 3, 8, 8])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, 8, 8])
    two = _graph(tmp_path / "two.onnx", [image, helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n", 3, 8, 8])],
                 [helper.make_node("Add", ["a", "b"], ["y"])], out)
    with pytest.raises(OnnxImportError, match=r"^two.onnx has 2 inputs \(a, b\); levit-bench measures models whose "
                                              r"one input is a batch of images$"):
        inspect_onnx(two)
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["n", 128])
    tokens = _graph(tmp_path / "tokens.onnx", [ids], [helper.make_node("Identity", ["ids"], ["y"])],
                    helper.make_tensor_value_info("y", TensorProto.INT64, ["n", 128]))
    with pytest.raises(OnnxImportError, match=r"^tokens.onnx's input ids is int64 nx128, not an image batch: "
                                              r"levit-bench feeds float32 N x 3 x H x W$"):
        inspect_onnx(tokens)
    free = _graph(tmp_path / "free.onnx", [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                  [helper.make_node("Relu", ["a"], ["y"])], helper.make_tensor_value_info("y", TensorProto.FLOAT, None))
    with pytest.raises(OnnxImportError, match=r"^free.onnx's input has a symbolic size \(nx3xhxw\): give --resolution R$"):
        inspect_onnx(free)
    assert inspect_onnx(free, resolution=16).resolution == 16


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "levit_bench", *args], capture_output=True, text=True, timeout=600,
                          cwd=cwd, env=dict(os.environ))


def test_run_on_onnxruntime_and_openvino_is_stored_and_drawn(tiny_onnx, tmp_path):
    for runtime in ("onnxruntime", "openvino"):
        result = _cli("run", "--onnx", str(tiny_onnx), "--runtime", runtime, "--platform", "xeon", "--batch", "4",
                      "--protocol", "smoke", "--json", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        record = json.loads(result.stdout)[0]
        assert (record["model"], record["family"], record["reference"], record["status"]) == \
               ("tiny_net", "user", "onnxruntime", "ok")
        assert record["params"] == count_parameters(TinyNet()) and record["macs"] == count_macs(TinyNet(), RESOLUTION)
        assert record["precision"] == "fp32" and record["max_abs_diff"] <= 1e-4 * max(1, record["max_abs_logit"])
        assert record["parity_images"] == 4 and record["top1_agreement"] == 1.0
    # imported once, and checked there: ONNX Runtime runs it, optimised as plain
    sidecar = json.loads((Path(os.environ["LEVIT_BENCH_HOME"]) / "models" / "tiny_net.json").read_text())
    assert sidecar["parity"]["passed"] and sidecar["parity"]["inputs"] == 64 and sidecar["reference"] == "onnxruntime"
    for runtime in ("torch", "executorch"):  # both run a PyTorch model, which a user's ONNX file is not
        refused = _cli("run", "--onnx", str(tiny_onnx), "--runtime", runtime, "--platform", "xeon", cwd=tmp_path)
        assert refused.returncode != 0 and refused.stderr.strip().splitlines() == [
            f"levit-bench run: error: tiny_net is the ONNX file {tiny_onnx}, with no PyTorch model for {runtime}: "
            "measure it with onnxruntime, openvino, tvm"]

    report = _cli("report", "--onnx", str(tiny_onnx), "--out", str(tmp_path / "report"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "report" / "index.html").read_text()
    # its Table 3 row: family user, 0.00 M parameters and 0.1 M MACs from its graph, no top-1 known
    assert '<td>tiny_net</td><td>user</td>\n<td class="num">0.00</td><td class="num">0.1</td>' in page
    csv = (tmp_path / "report" / "results.csv").read_text()
    assert sum(line.count("tiny_net") > 0 for line in csv.splitlines()) == 2

    # drawn: the speed-accuracy figure with the user's points differs from the one without them
    from levit_bench.reports.dataset import report_points
    from levit_bench.reports.figures import tradeoff_figure
    from levit_bench.store import open_store

    points = report_points(open_store(Path(os.environ["LEVIT_BENCH_HOME"])).records(), [])
    assert {(p["model"], p["family"], p["top1"]) for p in points} == {("tiny_net", "user", None)}
    tradeoff_figure(points, "xeon", "with", tmp_path / "with.png")
    tradeoff_figure([], "xeon", "with", tmp_path / "without.png")
    assert (tmp_path / "with.png").read_bytes() != (tmp_path / "without.png").read_bytes()


def test_a_fixed_batch_is_kept_and_another_is_refused(tmp_path):
    static = _export(tmp_path / "fixed.onnx", dynamic_batch=False)
    result = _cli("run", "--onnx", str(static), "--runtime", "onnxruntime", "--platform", "xeon", "--batch", "8",
                  cwd=tmp_path)
    assert result.returncode != 0 and result.stderr.strip().splitlines() == [
        "levit-bench run: error: fixed.onnx has a fixed batch of 2, not --batch 8: export it with a symbolic batch "
        "to measure others"]
    assert not (Path(os.environ["LEVIT_BENCH_HOME"]) / "results.db").exists()


def test_sweep_skips_torch_measures_tvm_and_profile_tells_op_types(tiny_onnx, tmp_path):
    """A sweep's worker processes register the file again; TVM compiles a copy fixed to the batch."""
    result = _cli("sweep", "--onnx", str(tiny_onnx), "--runtimes", "torch", "torch:compiled", "executorch",
                  "onnxruntime", "tvm:untuned",
                  "--platform", "xeon", "--batch", "4", "--rounds", "1", "--protocol", "smoke", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert sorted((r["runtime"], r["status"], r["reference"]) for r in records) == [
        ("onnxruntime", "ok", "onnxruntime"), ("tvm", "ok", "onnxruntime")]
    assert len({r["artifact_sha256"] for r in records}) == 1  # both measured the same batch-4 file
    profile = _cli("profile", "--onnx", str(tiny_onnx), "--runtime", "onnxruntime", "--platform", "xeon",
                   "--batch", "4", "--protocol", "smoke", "--json", cwd=tmp_path)
    assert profile.returncode == 0, profile.stderr
    components = {row["name"]: row for row in json.loads(profile.stdout)["components"]}
    # the convolutions (with their fused bias and ReLU) are one component, counted from the graph
    assert components["Conv"]["kernels"] >= 1 and components["Conv"]["flops_per_image"] == 2 * (
        8 * 16 * 16 * 3 * 9 + 16 * 8 * 8 * 4 * 9)


def test_a_graph_onnx_runtime_cannot_run_is_refused_at_import(tmp_path):
    from levit_bench.exporters.onnx_import import import_onnx, register
    from levit_bench.registry import unregister_model

    odd = _graph(tmp_path / "odd.onnx", [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 3, 8, 8])],
                 [helper.make_node("NoSuchOp", ["a"], ["y"], domain="example.custom")],
                 helper.make_tensor_value_info("y", TensorProto.FLOAT, None))
    info = inspect_onnx(odd)
    register(info, "odd")
    try:
        with pytest.raises(OnnxImportError, match=r"^odd.onnx: ONNX Runtime cannot run it: "):
            import_onnx(info, "odd", tmp_path / "models")
        assert not (tmp_path / "models").exists()
    finally:
        unregister_model("odd")
