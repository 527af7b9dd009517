"""The exporter: inference transform, ONNX graph, parity, sidecar, reproducibility, errors."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from levit_bench import cli
from levit_bench.exporters import fuse_for_inference
from levit_bench.exporters.pipeline import ExportOptions, export_model
from levit_bench.models.checkpoints import save_weights
from levit_bench.models.levit import LEVIT_CONFIGS, AttentionBias
from levit_bench.models.levit_fused import FusedLeViT, ResidualLinear, Scores
from levit_bench.registry import get_spec

from levit_reference import randomise

VARIANTS = sorted(LEVIT_CONFIGS)
FORBIDDEN_OPS = {"BatchNormalization", "Gather", "GatherND", "GatherElements", "Shape", "Unsqueeze",
                 "Concat", "ConstantOfShape"}


def _randomised_checkpoint(name, directory, seed=0):
    path = directory / f"{name}-weights.safetensors"
    model = randomise(get_spec(name).build(), seed=seed).eval()
    save_weights(model, path, name)
    return model, path


def _ort_logits(path, images):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]


@pytest.mark.parametrize("name", VARIANTS)
def test_fused_model_equals_unfused_and_has_no_batchnorm(name):
    model = randomise(get_spec(name).build(), seed=3).eval()
    fused = fuse_for_inference(model)
    kinds = {type(m) for m in fused.modules()}
    assert not any(issubclass(k, torch.nn.modules.batchnorm._BatchNorm) for k in kinds)
    assert AttentionBias not in kinds and Scores in kinds  # the bias looked up once, a constant
    assert isinstance(fused, FusedLeViT) and isinstance(fused.head, torch.nn.Linear)  # one merged head
    # every residual branch had a bias to carry downstream, so the equality below tests the carrying
    assert all(m.carried_bias.abs().max() > 0 for m in fused.modules() if isinstance(m, ResidualLinear))
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules())  # original untouched
    x = torch.randn(4, 3, 224, 224)
    with torch.no_grad():
        expected, actual = model(x), fused(x)
    assert (actual - expected).abs().max() <= 1e-5 * expected.abs().max()
    fused.train()  # no drop path, no batch statistics left to change the output
    with torch.no_grad():
        assert torch.equal(fused(x), actual)


INFERENCE_OPS = {"Conv", "HardSwish", "Gemm", "MatMul", "Reshape", "Transpose", "Slice", "Add", "Softmax", "ReduceMean"}


def _assert_inference_graph(graph, histogram, config):
    """The graph shape of `models/levit_fused.py`, so that a regression of it fails here."""
    blocks, shrinks = sum(config.depths), len(config.depths) - 1
    attentions = blocks + shrinks
    # no Mul (1/sqrt(D) is in the query weights), no Split (q, k, v are Gemms of their own)
    assert set(histogram) == INFERENCE_OPS, set(histogram) ^ INFERENCE_OPS
    assert histogram["Gemm"] == 6 * attentions + 1  # one per Linear, on (B*N, C) tokens; the head
    assert histogram["Add"] == attentions  # the attention biases alone
    assert histogram["Slice"] == shrinks  # the stride-2 subsampling of a shrinking attention
    assert histogram["Softmax"] == attentions and histogram["MatMul"] == 2 * attentions
    # per attention: q, K^T, v to head-major and the heads merged; the stem's tokens
    assert histogram["Transpose"] == 4 * attentions + 1
    # views per head only (the tokens are never reshaped around a Gemm: that was 2 per Linear)
    assert histogram["Reshape"] == 4 * blocks + 6 * shrinks + 3
    # each residual add is the C input of the Gemm that ends its branch: the stream itself
    weights = {w.name for w in graph.graph.initializer}
    adding = [n for n in graph.graph.node if n.op_type == "Gemm" and len(n.input) == 3 and n.input[2] not in weights]
    assert len(adding) == 2 * blocks + shrinks


@pytest.mark.parametrize("name", VARIANTS)
def test_export_every_variant(name, tmp_path):
    model, weights = _randomised_checkpoint(name, tmp_path)
    result = export_model(ExportOptions(model=name, out_dir=tmp_path / "out", weights=str(weights)))
    onnx_path, sidecar_path = tmp_path / "out" / f"{name}.onnx", tmp_path / "out" / f"{name}.json"
    assert result.onnx_path == onnx_path and result.sidecar_path == sidecar_path
    sidecar = json.loads(sidecar_path.read_text())

    graph = onnx.load(str(onnx_path))
    onnx.checker.check_model(graph, full_check=True)
    ops = {node.op_type for node in graph.graph.node}
    assert not ops & FORBIDDEN_OPS, ops & FORBIDDEN_OPS
    assert sidecar["op_histogram"] == dict(sorted(
        {op: sum(n.op_type == op for n in graph.graph.node) for op in ops}.items(), key=lambda kv: (-kv[1], kv[0])))
    _assert_inference_graph(graph, sidecar["op_histogram"], LEVIT_CONFIGS[name])
    assert [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim] == [16, 3, 224, 224]

    # the sidecar's parity figures, and an independent check of them
    parity = sidecar["parity"]
    assert parity["inputs"] == 64 and parity["top1_agreement"] == 1.0 and parity["passed"]
    assert parity["max_abs_diff"] <= 1e-4 * max(1.0, parity["max_abs_logit"])
    images = torch.randn(16, 3, 224, 224, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = model(images).numpy()
    actual = _ort_logits(onnx_path, images)
    assert np.abs(actual - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())
    assert (actual.argmax(1) == expected.argmax(1)).all()

    assert sidecar["model"] == name and sidecar["opset"] == 18 and sidecar["input_shape"] == [16, 3, 224, 224]
    assert sidecar["onnx_sha256"] == hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    assert sidecar["weights"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert sidecar["simplified"] is True and sidecar["exporter"].startswith("torch.onnx")
    assert sidecar["fused_vs_unfused"]["relative"] <= 1e-5
    for package in ("torch", "onnx", "onnxsim", "onnxruntime", "levit-bench"):
        assert sidecar["versions"][package]
    assert sidecar["timings_s"]["total"] > 0
    metadata = {p.key: p.value for p in graph.metadata_props}
    assert metadata["levit_bench.model"] == name
    assert metadata["levit_bench.weights_sha256"] == sidecar["weights"]["sha256"]
    assert metadata["levit_bench.opset"] == "18" and metadata["levit_bench.simplified"] == "True"
    assert json.loads(metadata["levit_bench.input_shape"]) == [16, 3, 224, 224]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{name}.json", f"{name}.onnx"]


def test_same_model_same_weights_same_sha256_across_processes(tmp_path):
    _, weights = _randomised_checkpoint("levit_128s", tmp_path)
    in_process = export_model(ExportOptions(model="levit_128s", out_dir=tmp_path / "a", weights=str(weights)))
    result = subprocess.run(
        [sys.executable, "-m", "levit_bench", "export", "--model", "levit_128s", "--weights", str(weights),
         "--out", str(tmp_path / "b"), "--json"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    other = json.loads(result.stdout)
    assert other["onnx_sha256"] == in_process.sidecar["onnx_sha256"]
    assert (tmp_path / "a" / "levit_128s.onnx").read_bytes() == (tmp_path / "b" / "levit_128s.onnx").read_bytes()


def test_random_init_is_seeded(tmp_path):
    first = export_model(ExportOptions(model="levit_128s", out_dir=tmp_path / "a", seed=5))
    second = export_model(ExportOptions(model="levit_128s", out_dir=tmp_path / "b", seed=5))
    third = export_model(ExportOptions(model="levit_128s", out_dir=tmp_path / "c", seed=6))
    assert first.sidecar["weights"] == {"source": "random-init", "seed": 5, "init": "representative"}
    assert first.sidecar["onnx_sha256"] == second.sidecar["onnx_sha256"] != third.sidecar["onnx_sha256"]


def test_dynamic_batch(tmp_path):
    model, weights = _randomised_checkpoint("levit_128s", tmp_path)
    result = export_model(ExportOptions(model="levit_128s", out_dir=tmp_path, weights=str(weights),
                                        dynamic_batch=True))
    graph = onnx.load(str(result.onnx_path))
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 224, 224]
    assert not {n.op_type for n in graph.graph.node} & FORBIDDEN_OPS
    assert result.sidecar["input_shape"] == ["batch", 3, 224, 224]
    for batch in (1, 5):
        images = torch.randn(batch, 3, 224, 224)
        with torch.no_grad():
            expected = model(images).numpy()
        actual = _ort_logits(result.onnx_path, images)
        assert actual.shape == (batch, 1000)
        assert np.abs(actual - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())


def test_batch_one_and_no_simplify(tmp_path):
    result = export_model(ExportOptions(model="levit_128s", out_dir=tmp_path, batch=1, simplify=False))
    assert result.sidecar["input_shape"] == [1, 3, 224, 224]
    assert result.sidecar["simplified"] is False and result.sidecar["parity"]["passed"]
    assert "BatchNormalization" not in result.sidecar["op_histogram"]


def _cli(capsys, *args):
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(code, err):
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_unknown_model_lists_the_known_ones(capsys, tmp_path):
    code, _, err = _cli(capsys, "export", "--model", "levit_1000", "--out", str(tmp_path))
    line = _one_line_error(code, err)
    assert "unknown model 'levit_1000'" in line and "levit_128s" in line and "levit_384" in line
    assert list(tmp_path.iterdir()) == []


def test_unreadable_weights(capsys, tmp_path):
    garbage = tmp_path / "weights.pth"
    garbage.write_bytes(b"\x80\x02garbage")
    code, _, err = _cli(capsys, "export", "--model", "levit_128s", "--weights", str(garbage),
                        "--out", str(tmp_path / "out"))
    assert "cannot read checkpoint" in _one_line_error(code, err)
    assert not list((tmp_path / "out").glob("*"))


def test_unwritable_output_directory(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, _, err = _cli(capsys, "export", "--model", "levit_128s", "--out", str(blocker / "models"))
    assert "cannot write to output directory" in _one_line_error(code, err)


def test_opset_below_the_exporters_minimum(capsys, tmp_path):
    code, _, err = _cli(capsys, "export", "--model", "levit_128s", "--opset", "13", "--out", str(tmp_path))
    assert "opset 13 is not supported" in _one_line_error(code, err)
    assert list(tmp_path.iterdir()) == []


def test_parity_failure_writes_nothing_and_keeps_the_old_files(capsys, tmp_path, monkeypatch):
    first = export_model(ExportOptions(model="levit_128s", out_dir=tmp_path, seed=1))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken_fuse(model):
        fused = fuse_for_inference(model)
        with torch.no_grad():
            fused.head.bias.add_(1.0)  # a wrong fold: logits off by one
        return fused

    monkeypatch.setattr("levit_bench.exporters.pipeline.fuse_for_inference", broken_fuse)
    code, _, err = _cli(capsys, "export", "--model", "levit_128s", "--seed", "2", "--out", str(tmp_path))
    line = _one_line_error(code, err)
    assert "parity check failed for levit_128s" in line and "nothing written" in line
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no partial, no temp file
    assert first.sidecar["parity"]["passed"]


def test_batch_and_dynamic_batch_are_exclusive(capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main(["export", "--model", "levit_128s", "--batch", "4", "--dynamic-batch"])
    assert raised.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_random_init_has_no_constant_tensors_a_trained_network_lacks():
    from levit_bench.exporters.pipeline import load_model

    model, record = load_model("levit_128s", None, seed=3)
    assert record == {"source": "random-init", "seed": 3, "init": "representative"}
    residual_bn = model.stages[0].blocks[0].attn.proj.bn.weight
    assert residual_bn.abs().min() > 0  # built as zeros (the paper's init), perturbed for speed work
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and tensor.numel() > 1:
            assert tensor.unique().numel() > 1, name
    again, _ = load_model("levit_128s", None, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
