"""PyTorch's own fast paths as runtimes: torch:compiled (AOTInductor) and executorch (XNNPACK).

Parity through the gate, delegation and threads on levit_128s (one build each: Inductor and the
XNNPACK lowering take half a minute or more for it); the mechanics of the built files (kept,
reused with no compile, checked by hash, rebuilt for other weights) on a tiny net made here.
"""

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from levit_bench import registry
from levit_bench.exporters.fuse import fuse_for_inference
from levit_bench.exporters.parity import TOLERANCES
from levit_bench.models.components import LAYOUT, OTHER
from levit_bench.models import levit_fused
from levit_bench.models.levit import COMPONENTS as LEVIT_COMPONENTS
from levit_bench.platforms import get_platform
from levit_bench.store import open_store
from levit_bench.runners import core_locks
from levit_bench.runners.artifacts import find_artifact
from levit_bench.runners.session import RunRequest, run_cell
from levit_bench.runtimes import get_runtime
from cli_support import run_cli
from tiny_models import TINY, tiny  # noqa: F401 (a fixture)


def _run(work: Path, model: str, runtime: str, mode=None, weights=None, precision=None) -> dict:
    request = RunRequest(model, runtime, "xeon", mode=mode, precision=precision, protocol="smoke",
                         weights=str(weights) if weights else None)
    record = run_cell(request, work)
    open_store(work).insert(record)
    return record


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _built(record: dict, key: str) -> tuple[dict, Path, dict]:
    """The record's details, the built file, and the file's sidecar."""
    details = record["runtime_info"]["details"]
    path = Path(details[key])
    return details, path, json.loads(path.with_suffix(".json").read_text())


@pytest.mark.parametrize("runtime,mode,key", [("torch", "compiled", "pt2"), ("executorch", None, "pte")])
def test_a_built_file_is_kept_reused_hash_checked_and_rebuilt_for_other_weights(tiny, tmp_path, runtime, mode, key):
    work = tmp_path / "work"
    first = _run(work, TINY, runtime, mode, tiny[0])
    assert first["status"] == "ok", first.get("error")
    details, path, sidecar = _built(first, key)
    assert details["built_now"] is True and path.is_file() and path.parent.parent.parent.name in ("inductor",
                                                                                                 "executorch")
    assert sidecar["sha256"] == _sha256(path) == details[f"{key}_sha256"] and sidecar["build_s"] > 0
    assert sidecar["from_sha256"] == first["artifact_sha256"] and sidecar["batch"] == 16
    assert details[f"{key}_load_s"] < 5

    again = _run(work, TINY, runtime, mode, tiny[0])  # found: loaded, nothing compiled
    details, again_path, _ = _built(again, key)
    assert again["status"] == "ok" and details["built_now"] is False and again_path == path
    assert details[f"{key}_sha256"] == sidecar["sha256"]

    path.write_bytes(path.read_bytes()[:-64] + bytes(64))  # damaged: its hash is not the sidecar's
    repaired = _run(work, TINY, runtime, mode, tiny[0])
    details, _, rebuilt = _built(repaired, key)
    assert repaired["status"] == "ok" and details["built_now"] is True and rebuilt["sha256"] == _sha256(path)

    other = _run(work, TINY, runtime, mode, tiny[1])  # other weights: another export, another build
    details, other_path, other_sidecar = _built(other, key)
    assert other["status"] == "ok" and details["built_now"] is True and other_path != path
    assert other_sidecar["from_sha256"] == other["artifact_sha256"] != first["artifact_sha256"]
    assert [r["status"] for r in open_store(work).records()] == ["ok"] * 4


def test_executorch_runs_on_the_platforms_threads_and_gives_the_pool_back(tiny, tmp_path):
    from executorch.extension.pybindings import portable_lib

    work = tmp_path / "work"
    assert _run(work, TINY, "onnxruntime", weights=tiny[0])["status"] == "ok"  # exports the artifact
    artifact = find_artifact(work, TINY, 16)
    before = portable_lib._threadpool_get_thread_count()
    cls = get_runtime("executorch").runner_class()
    platform = get_platform("xeon")
    runner = cls(platform, cls.Options.make("executorch", "fp32", None, work))
    with core_locks.pinned(platform):
        runner.load(artifact, 16)
        assert portable_lib._threadpool_get_thread_count() == 1 == runner.describe().threads
        runner(runner.to_input(torch.zeros(16, 3, 32, 32).numpy()))
    runner.close()
    assert portable_lib._threadpool_get_thread_count() == before


def _profile(work: Path, capsys, runtime: str, *args) -> tuple[dict, dict]:
    """`profile --json` of levit_128s on the built file the run before kept: the profile, and its
    components by name, whose times sum to the kernels' (nothing dropped) within the call's total."""
    code, out, err = run_cli(capsys, "--workdir", work, "profile", "--model", "levit_128s", "--runtime", runtime,
                             "--platform", "xeon", "--protocol", "smoke", "--json", *args)
    assert code == 0, err
    profile = json.loads(out)
    rows = {row["name"]: row for row in profile["components"]}
    assert sum(r["ms"] for r in rows.values()) == pytest.approx(profile["kernels_ms"], rel=1e-3)
    assert 0 < profile["kernels_ms"] <= profile["total_ms"] * 1.05 and profile["calls"] >= 2
    return profile, rows


def test_levit_on_torch_compiled_passes_the_gate_and_is_profiled(workdir_with_artifact, capsys):
    record = _run(workdir_with_artifact, "levit_128s", "torch", "compiled")
    assert record["status"] == "ok", record.get("error")
    assert record["mode"] == "compiled" and record["threads"] == 1 and record["busy_threads"] == 1
    assert record["max_abs_diff"] <= 1e-4 * max(1.0, record["max_abs_logit"]) and record["top1_agreement"] == 1.0
    details, path, sidecar = _built(record, "pt2")
    assert details["compile_mode"] == "default" and details["compile_s"] == sidecar["build_s"] > 0
    assert sidecar["inductor_configs"]["freezing"] is True and sidecar["threads"] == 1
    assert sidecar["cpu_model"] == record["cpu_model"] and sidecar["torch_version"] == torch.__version__

    # every Linear runs on oneDNN, each residual's add fused into its Linear: none is left to aten's
    # addmm or mm (MKL's sgemm, AVX2 on AMD CPUs); the attention products are aten's bmm
    fused = fuse_for_inference(registry.get_spec("levit_128s").build())
    residuals = sum(isinstance(m, levit_fused.ResidualLinear) for m in fused.modules())
    linears = sum(isinstance(m, nn.Linear) for m in fused.modules())
    calls = details["library_calls"]
    assert calls == sidecar["library_calls"] and residuals == 20
    assert calls == {"_linear_pointwise": linears, "_linear_pointwise_binary": residuals, "bmm_out": 22,
                     "mkldnn__convolution_pointwise": 4}

    # Inductor's kernels carry no module path: data movement is `layout`, the rest `other`, all of it kept
    profile, rows = _profile(workdir_with_artifact, capsys, "torch", "--mode", "compiled")
    assert rows[LAYOUT]["ms"] > 0 and rows[OTHER]["ms"] > rows[LAYOUT]["ms"]
    assert sum(rows[name]["ms"] for name in (LAYOUT, OTHER)) == pytest.approx(profile["kernels_ms"], rel=1e-3)


def test_levit_is_delegated_whole_to_xnnpack_passes_the_gate_and_is_profiled(workdir_with_artifact, capsys):
    record = _run(workdir_with_artifact, "levit_128s", "executorch")
    assert record["status"] == "ok", record.get("error")
    assert record["max_abs_diff"] <= 1e-4 * max(1.0, record["max_abs_logit"]) and record["top1_agreement"] == 1.0
    assert record["threads"] == 1 and record["busy_threads"] == 1  # the pinned core computed on one thread
    delegation = record["runtime_info"]["details"]["delegation"]
    # one delegate holds every op: no GEMM (nor anything else) left to portable kernels
    assert delegation["delegates"] == 1 and delegation["portable_ops"] == 0 and delegation["portable"] == {}
    assert delegation["delegated"]["linear"] + delegation["delegated"].get("mm", 0) >= 40
    assert delegation["delegated_ops"] == sum(delegation["delegated"].values())
    stored = open_store(workdir_with_artifact).records()[0]
    assert stored["runtime_info"]["details"]["delegation"] == delegation

    # XNNPACK's own operators, each told its component by the delegated node it runs
    profile, rows = _profile(workdir_with_artifact, capsys, "executorch")
    assert list(rows) == list(LEVIT_COMPONENTS.names)
    for name in ("mlp", "stem", "attention.qkv", "attention.scores"):
        assert rows[name]["ms"] > 0 and rows[name]["gflops"] > 0, name
    assert rows[OTHER]["share"] < 0.05


def test_executorch_int8_is_quantized_by_pt2e_gated_stored_and_profiled(tiny, tmp_path, capsys):
    """On the tiny net: PT2E's lowering of a LeViT takes minutes (benchmarks/pytorch_paths.py runs it)."""
    work = tmp_path / "work"
    record = _run(work, TINY, "executorch", weights=tiny[0], precision="int8")
    stored = open_store(work).records()
    assert [r["uid"] for r in stored] == [record["uid"]] and record["precision"] == "int8"
    assert record["status"] == "ok", record.get("error")  # through the int8 gate
    assert TOLERANCES["int8"].violation(record["max_abs_diff"], record["max_abs_logit"],
                                        record["top1_agreement"]) is None
    assert record["fp32_artifact_sha256"] == record["artifact_sha256"]  # quantized as it loads, not from the ONNX
    details, path, sidecar = _built(record, "pte")
    assert path.name == f"{TINY}.xnnpack-int8.pte" and sidecar["precision"] == "int8"
    assert details["calibration"] == sidecar["calibration"] == {"kind": "synthetic", "count": 64, "seed": 0}
    delegated = details["delegation"]["delegated"]
    assert any("quantize" in op for op in delegated) and "convolution" in delegated  # XNNPACK runs the int8 graph

    # profiled as it was measured: the same int8 .pte, XNNPACK's own quantized operators
    code, out, err = run_cli(capsys, "--workdir", work, "profile", "--model", TINY, "--runtime", "executorch",
                             "--platform", "xeon", "--precision", "int8", "--weights", tiny[0], "--protocol", "smoke",
                             "--json")
    assert code == 0, err
    profile = json.loads(out)
    assert profile["precision"] == "int8" and profile["artifact_sha256"] == record["artifact_sha256"]
    assert any("QC8" in kernel["name"] for kernel in profile["kernels"])  # int8 weights, per channel
    assert sum(row["ms"] for row in profile["components"]) == pytest.approx(profile["kernels_ms"], rel=1e-3)


def _hide_executorch(monkeypatch) -> None:
    for name in [n for n in sys.modules if n == "executorch" or n.startswith("executorch.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "executorch", None)


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_a_missing_executorch_is_one_line_and_stores_nothing(workdir_with_artifact, capsys, monkeypatch, command):
    _hide_executorch(monkeypatch)
    code, _, err = run_cli(capsys, "--workdir", workdir_with_artifact, command,
                           "--runtimes" if command == "sweep" else "--runtime", "executorch", "--platform", "xeon",
                           "--models" if command == "sweep" else "--model", "levit_128s", "--protocol", "smoke")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert "executorch is not installed: pip install 'levit-bench[executorch]'" in lines[0]
    assert not (workdir_with_artifact / "results.db").exists() or open_store(workdir_with_artifact).records() == []


@pytest.mark.parametrize("args,message", [
    (("run", "--runtime", "onnxruntime", "--compile-mode", "max-autotune"),
     "--compile-mode applies to torch:compiled (Inductor), not onnxruntime"),
    (("run", "--runtime", "torch", "--mode", "eager", "--compile-mode", "default"),
     "--compile-mode applies to torch:compiled (Inductor), not torch:eager"),
    (("sweep", "--runtimes", "torch", "onnxruntime", "--compile-mode", "max-autotune"),
     "--compile-mode applies to torch:compiled, which this sweep does not measure"),
])
def test_compile_mode_misuse_is_one_line(workdir_with_artifact, capsys, args, message):
    models = ("--models" if args[0] == "sweep" else "--model", "levit_128s")
    code, _, err = run_cli(capsys, "--workdir", workdir_with_artifact, *args, "--platform", "xeon", *models,
                           "--protocol", "smoke")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and message in lines[0], err
    assert not (workdir_with_artifact / "results.db").exists() or open_store(workdir_with_artifact).records() == []


@pytest.mark.parametrize("runtime,mode", [("torch", "compiled"), ("executorch", None)])
def test_both_refuse_the_gpu_platform_before_anything_is_built(runtime, mode):
    from levit_bench.runners.base import RunnerError

    cls = get_runtime(runtime).runner_class()
    with pytest.raises(RunnerError, match=r"(compiled for|runs on) the CPU.*not gpu"):
        cls(get_platform("gpu"), cls.Options.make(runtime, "fp32", mode, Path(".")))


def test_a_sweep_by_default_measures_torch_compiled_and_executorch_and_max_autotune_when_asked(tmp_path):
    from levit_bench.runners.sweep import compiled_as, plan
    from levit_bench.runtimes import default_sweep

    defaults = default_sweep()
    assert defaults[:2] == ["torch", "torch:compiled"] and "executorch" in defaults
    cells = plan(["levit_128s"], compiled_as(defaults, "max-autotune"), tmp_path)
    assert {(c.runtime, c.mode) for c in cells} >= {("torch", "traced"), ("torch", "compiled-max-autotune"),
                                                    ("executorch", None)}
    assert ("torch", "compiled") not in {(c.runtime, c.mode) for c in cells}


def test_every_levit_gemm_is_quantized_for_xnnpack_residuals_included():
    """PT2E with XNNPACK's quantizer annotates `linear`, not `mm`: a residual written as
    `stream + h @ W` stayed fp32 (26 of levit_128's 85 XNNPACK GEMMs), so the xnnpack form's
    residuals are `stream + linear(h, W)`. Every linear reads a dequantized activation and weight."""
    import numpy as np

    from levit_bench.exporters import pte
    from levit_bench.exporters.fuse import graph_form

    torch.manual_seed(0)
    model = graph_form(fuse_for_inference(registry.get_spec("levit_128s").build()), "xnnpack")
    images = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    quantized = pte._quantized(model, torch.zeros(1, 3, 224, 224), images, 1)
    linears = [node for node in quantized.graph.nodes if node.target == torch.ops.aten.linear.default]
    assert len(linears) == sum(isinstance(m, (nn.Linear, levit_fused.ResidualLinear)) for m in model.modules()) == 67
    for node in linears:
        activation, weight = node.args[:2]
        assert "dequantize" in str(activation.target) and "dequantize" in str(weight.target), node.name
    assert not [node for node in quantized.graph.nodes if node.target in (torch.ops.aten.mm.default,
                                                                         torch.ops.aten.matmul.default)]


def test_executorch_on_the_arm_platform_of_an_x86_host_points_to_the_emulator(workdir_with_artifact, capsys):
    code, _, err = run_cli(capsys, "--workdir", workdir_with_artifact, "run", "--runtime", "executorch",
                           "--platform", "arm", "--model", "levit_128s", "--protocol", "smoke")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert "platform arm needs an aarch64 CPU with NEON to run executorch" in lines[0]
    assert "(--rpc emulator checks its .pte on ExecuTorch's aarch64 runtime under QEMU)" in lines[0]
