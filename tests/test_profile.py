"""Where the time goes: component vocabularies, the node -> component map of an export, the
runtimes' profiles told in components, and each cell's memory."""

import collections
import json
import subprocess
import sys

import onnx
import pytest
from onnx import helper

from levit_bench.exporters.components import component_map, node_paths
from levit_bench.models.components import OTHER, ComponentRules, Rule
from levit_bench.models.levit import COMPONENTS as LEVIT
from levit_bench.runners.profiling import Kernel, Profile, by_component


@pytest.mark.parametrize("path,op,component", [
    ("patch_conv.0", "Conv", "stem"),
    ("stages.0.blocks.1.attn.qkv", "Gemm", "attention.qkv"),  # training: one fused Linear
    ("stages.0.blocks.1.attn.k", "Gemm", "attention.qkv"),  # inference: three
    ("stages.0.blocks.1.attn.q", "Reshape", "layout"),  # data movement is layout wherever it is
    ("stages.0.blocks.1.attn.scores", "Softmax", "attention.scores"),
    ("stages.0.blocks.1.attn.mix", "MatMul", "attention.mix"),
    ("stages.0.blocks.1.attn", "HardSwish", "attention.proj"),
    ("stages.0.blocks.1.attn.proj", "Gemm", "attention.proj"),
    ("stages.1.shrink.attn.q", "Gemm", "shrink"),
    ("stages.1.shrink.mlp.expand", "Gemm", "mlp"),
    ("stages.0.blocks.1", "Add", "residual"),
    ("stages.0.blocks.1", "aten::add", "residual"),
    ("", "ReduceMean", "head"),
    ("head", "Gemm", "head"),
    ("somewhere.else", "Mul", OTHER),
])
def test_levit_vocabulary(path, op, component):
    assert LEVIT.component(path, op) == component
    assert component in LEVIT.names


def _graph(nodes):
    value = helper.make_tensor_value_info
    graph = helper.make_graph(nodes, "g", [value("x", onnx.TensorProto.FLOAT, [1])],
                              [value("y", onnx.TensorProto.FLOAT, [1])])
    return helper.make_model(graph)


def test_simplified_nodes_take_their_path_from_the_graph_and_unknown_ones_are_other():
    # before simplifying, "t1" came from a.proj and "y" from b; onnxsim made n1 and n2 anew
    scopes = {"t1": "a.proj", "y": "b"}
    model = _graph([
        helper.make_node("Reshape", ["x", "x"], ["new0"], name="n1"),  # new output: takes n2's path
        helper.make_node("Gemm", ["new0", "x"], ["t1"], name="n2"),  # kept output: a.proj
        helper.make_node("Relu", ["t1"], ["y"], name="renamed"),  # kept output, renamed node: b
        helper.make_node("Relu", ["x"], ["orphan"], name="lost"),  # nothing tells: no path
    ])
    assert node_paths(model, scopes) == {"n1": "a.proj", "n2": "a.proj", "renamed": "b", "lost": None}
    rules = ComponentRules((Rule(r"^a\.proj$", "proj"), Rule(r"^b$", "act")))
    mapped = component_map(model, scopes, rules)
    assert mapped["vocabulary"] == ["proj", "act", OTHER]
    assert {name: node["component"] for name, node in mapped["nodes"].items()} == {
        "n1": "proj", "n2": "proj", "renamed": "act", "lost": OTHER}


def test_kernels_are_attributed_never_dropped():
    component_map = {"vocabulary": ["mlp", "layout", OTHER], "nodes": {
        "fc": {"op": "Gemm", "outputs": ["h"], "component": "mlp"},
        "view": {"op": "Reshape", "outputs": ["v"], "component": "layout"},
    }}
    profile = Profile("test", 10, 5.0, [
        Kernel("fc", "Gemm", 2.0),  # by its name
        Kernel("fused_7", "FusedGemm", 1.0, outputs=("v",), covers=("fc", "view")),  # by what it fused: computing wins
        Kernel("act_3", "HardSigmoid", 0.125),  # made by the runtime, no tensors named: the kernel run next
        Kernel("view", "Reshape", 0.5),
        Kernel("renamed", "Custom", 0.25, outputs=("t9",), inputs=("t8",)),  # its tensors match nothing: other
        Kernel("ReorderOutput", "ReorderOutput", 0.0625, outputs=("t10",)),  # a layout conversion it inserted
    ])
    rows = {r["name"]: r for r in by_component(profile, component_map)}
    assert rows["mlp"]["ms"] == 3.0 and rows["mlp"]["kernels"] == 2
    assert rows["layout"]["ms"] == 0.6875 and rows["layout"]["kernels"] == 3
    assert rows[OTHER]["ms"] == 0.25 and rows[OTHER]["kernels"] == 1
    assert sum(r["ms"] for r in rows.values()) == pytest.approx(3.9375)
    assert sum(r["share"] for r in rows.values()) == pytest.approx(1.0, abs=1e-3)


def _components(sidecar) -> collections.Counter:
    return collections.Counter((n["component"], n["op"]) for n in sidecar["components"]["nodes"].values())


def test_the_levit_export_maps_every_node(exported_128s):
    sidecar = json.loads((exported_128s / "models" / "levit_128s.json").read_text())
    nodes = sidecar["components"]["nodes"]
    assert len(nodes) == sum(sidecar["op_histogram"].values())
    counts = _components(sidecar)
    blocks, shrinks = 2 + 3 + 4, 2  # levit_128s: depths (2, 3, 4), two shrinking attentions
    assert counts[("attention.scores", "Softmax")] == blocks and counts[("shrink", "Softmax")] == shrinks
    assert counts[("attention.mix", "MatMul")] == blocks
    assert counts[("stem", "Conv")] == 4 and counts[("stem", "HardSwish")] == 3
    assert counts[("attention.proj", "Gemm")] == blocks and counts[("mlp", "Gemm")] == 2 * (blocks + shrinks)
    assert counts[("residual", "Add")] == 0  # each residual add is inside the Gemm ending its branch
    assert sum(n for (component, _), n in counts.items() if component == OTHER) == 0


@pytest.mark.parametrize("model,expected", [
    ("efficientnet_b0", {("mbconv.dw", "Conv"), ("mbconv.pw", "Conv"), ("mbconv.se", "Sigmoid"), ("stem", "Conv")}),
    ("deit_tiny", {("patch", "Conv"), ("attention", "Softmax"), ("mlp", "Gemm"), ("head", "Gemm")}),
    ("mobilevit_xxs", {("mv2", "Conv"), ("transformer", "Softmax"), ("unfold_fold", "Transpose"), ("head", "Gemm")}),
])
def test_every_family_maps_its_export(tmp_path, model, expected):
    from levit_bench.exporters.pipeline import ExportOptions, export_model

    sidecar = export_model(ExportOptions(model, tmp_path, batch=1)).sidecar
    counts = _components(sidecar)
    assert expected <= set(counts), sorted(counts)
    other = sum(n for (component, _), n in counts.items() if component == OTHER)
    assert other <= 0.05 * sum(counts.values())  # nearly every node is named


def _cli(workdir, *args):
    command = [sys.executable, "-m", "levit_bench", "--workdir", str(workdir), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("runtime,mode", [("onnxruntime", None), ("openvino", None), ("torch", "traced"),
                                          ("torch", "eager")])
def test_profile_tells_the_time_per_component(workdir_with_artifact, runtime, mode):
    # the default protocol (>= 3 s of calls): a profile averaged over a few calls is at the mercy of one
    result = _cli(workdir_with_artifact, "profile", "--model", "levit_128s", "--runtime", runtime,
                  "--platform", "xeon", "--json", *(["--mode", mode] if mode else []))
    assert result.returncode == 0, result.stderr
    profile = json.loads(result.stdout)
    for key in ("model", "runtime", "total_ms", "median_ms", "components", "kernels_ms", "overhead", "calls"):
        assert key in profile, key
    assert profile["model"] == "levit_128s" and profile["runtime"] == runtime and profile["calls"] >= 10
    rows = {row["name"]: row for row in profile["components"]}
    assert list(rows) == list(LEVIT.names)
    for row in rows.values():
        assert set(row) >= {"name", "ms", "share", "gflops"}
    assert sum(r["ms"] for r in rows.values()) == pytest.approx(profile["kernels_ms"], rel=1e-3)
    # the kernels run inside the runtime's total (OpenVINO's per-node timers sum a few % above it)
    assert profile["kernels_ms"] <= profile["total_ms"] * 1.15
    assert profile["outside_kernels_ms"] == pytest.approx(profile["total_ms"] - profile["kernels_ms"], abs=1e-3)
    # the model's work is where the model says it is: the MLPs and the stem are measured and compute
    for name in ("mlp", "stem", "attention.qkv", "attention.scores"):
        assert rows[name]["ms"] > 0 and rows[name]["gflops"] > 0, name
    assert rows[OTHER]["share"] < 0.05


def test_profile_of_an_artifact_without_components_says_how_to_mend_it(workdir_with_artifact):
    sidecar_path = workdir_with_artifact / "models" / "levit_128s.json"
    sidecar = json.loads(sidecar_path.read_text())
    del sidecar["components"]  # as an export made before component maps
    sidecar_path.write_text(json.dumps(sidecar))
    result = _cli(workdir_with_artifact, "profile", "--model", "levit_128s", "--runtime", "onnxruntime",
                  "--platform", "xeon", "--protocol", "smoke")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "export it again (levit-bench export --model levit_128s)" in result.stderr


def _compiled_graph(path, nodes, weights, output: tuple[str, list[int]]):
    """An ONNX graph of `nodes` on an input `x` of shape [2, 8], saved at `path`, compiled by TVM for this CPU."""
    from levit_bench.runners.tvm.compile import compile_module
    from levit_bench.runners.tvm.target import host_target

    value = helper.make_tensor_value_info
    graph = helper.make_graph(nodes, "g", [value("x", onnx.TensorProto.FLOAT, [2, 8])],
                              [value(output[0], onnx.TensorProto.FLOAT, output[1])], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return compile_module(path, host_target(1), None)


def test_tvm_kernels_are_wired_to_the_graph_nodes_they_run(tmp_path):
    # MatMul+Add+Relu fuse into one kernel, Transpose+Split+Mul into another: each kernel names the
    # graph tensors it writes (its own output, from its consumer, and what it fused) and reads
    import numpy as np
    from onnx import numpy_helper

    from levit_bench.runners.tvm.vm import LocalVm
    from levit_bench.runners.tvm.wiring import timed_kernels

    weights = [numpy_helper.from_array(np.eye(8, dtype="float32"), "w"),
               numpy_helper.from_array(np.ones(8, dtype="float32"), "b")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"], name="fc/MatMul"),
             helper.make_node("Add", ["mm", "b"], ["ad"], name="fc/Add"),
             helper.make_node("Relu", ["ad"], ["r"], name="act/Relu"),
             helper.make_node("Transpose", ["r"], ["rt"], name="t/Transpose", perm=[1, 0]),
             helper.make_node("Split", ["rt"], ["s0", "s1"], name="t/Split", axis=0, num_outputs=2),
             helper.make_node("Mul", ["s0", "s1"], ["y"], name="out/Mul")]
    compiled = _compiled_graph(tmp_path / "tiny.onnx", nodes, weights, ("y", [4, 2]))
    assert [(w["function"], set(w["outputs"])) for w in compiled.wiring] == [
        ("fused_matmul_add_relu1", {"mm", "ad", "r"}), ("fused_transpose_split_multiply1", {"rt", "s0", "y"})]
    assert compiled.wiring[1]["inputs"] == ["r"]

    compiled.executable.export_library(str(tmp_path / "tiny.so"))
    vm = LocalVm(tmp_path / "tiny.so")
    x = vm.tensor(np.arange(16, dtype="float32").reshape(2, 8))
    calls = []
    expected = (np.arange(16, dtype="float32").reshape(2, 8) + 1).T
    with vm.instrumented() as events:
        for _ in range(3):
            events.clear()
            np.testing.assert_allclose(vm(x).numpy(), expected[:4] * expected[4:])  # the instrument changes nothing
            calls.append(list(events))
    vm(x)
    assert len(events) == len(calls[-1])  # closed: the VM's calls are no longer recorded
    kernels = {k.name: k for k in timed_kernels(calls, compiled.wiring)}
    assert set(kernels["fused_matmul_add_relu1#0"].outputs) == {"mm", "ad", "r"}
    assert kernels["fused_transpose_split_multiply1#0"].inputs == ("r",)
    builtins = [k for k in kernels.values() if k.op.startswith("vm.builtin.")]
    assert builtins and all(not (k.inputs or k.outputs) for k in builtins)  # placed by the kernel run next
    assert all(k.ms >= 0 for k in kernels.values())


def test_tvm_call_sites_of_one_shared_kernel_name_their_own_tensors(tmp_path):
    # two identical MatMul+Add+Relu blocks (as LeViT repeats its blocks): FuseOps gives both one
    # function, and each call must still name the tensors of its own block, not the first's
    import numpy as np
    from onnx import numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((8, 8)).astype("float32"), f"w{i}") for i in (1, 2)]
    weights += [numpy_helper.from_array(rng.standard_normal(8).astype("float32"), f"b{i}") for i in (1, 2)]
    nodes = []
    for i, source in ((1, "x"), (2, "r1")):
        nodes += [helper.make_node("MatMul", [source, f"w{i}"], [f"mm{i}"], name=f"block{i}/MatMul"),
                  helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"ad{i}"], name=f"block{i}/Add"),
                  helper.make_node("Relu", [f"ad{i}"], [f"r{i}"], name=f"block{i}/Relu")]
    compiled = _compiled_graph(tmp_path / "twice.onnx", nodes, weights, ("r2", [2, 8]))
    assert [w["function"] for w in compiled.wiring] == ["fused_matmul_add_relu1"] * 2  # one shared kernel
    assert [set(w["outputs"]) for w in compiled.wiring] == [{"mm1", "ad1", "r1"}, {"mm2", "ad2", "r2"}]
    assert compiled.wiring[1]["inputs"] == ["r1"]


def test_tvm_profile_tells_the_time_per_component(workdir_with_artifact):
    # untuned TVM is slow: the smallest batch that is a batch, the smoke protocol
    result = _cli(workdir_with_artifact, "profile", "--model", "levit_128s", "--runtime", "tvm",
                  "--platform", "xeon", "--batch", "2", "--protocol", "smoke", "--json")
    assert result.returncode == 0, result.stderr
    profile = json.loads(result.stdout)
    rows = {row["name"]: row for row in profile["components"]}
    assert list(rows) == list(LEVIT.names) and profile["mode"] == "untuned"
    assert sum(r["ms"] for r in rows.values()) == pytest.approx(profile["kernels_ms"], rel=1e-3)
    assert profile["kernels_ms"] <= profile["total_ms"]  # timed inside each call
    for name in ("mlp", "stem", "attention.qkv", "attention.scores", "attention.mix", "head"):
        assert rows[name]["ms"] > 0, name
    assert rows[OTHER]["share"] < 0.05


def test_ort_nchwc_convs_keep_their_component_and_every_family_gets_layout():
    from levit_bench.runners.onnxruntime_runner import trace_profile

    component_map = {"vocabulary": ["pw", OTHER], "nodes": {
        "node_conv2d_5": {"op": "Conv", "outputs": ["conv2d_5"], "component": "pw"}}}
    trace = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 1000},
             {"cat": "Node", "name": "ReorderInput_kernel_time", "ts": 1, "dur": 50, "args": {"op_name": "ReorderInput"}},
             {"cat": "Node", "name": "conv2d_5_nchwc_kernel_time", "ts": 2, "dur": 800, "args": {"op_name": "Conv"}},
             {"cat": "Node", "name": "ReorderOutput_kernel_time", "ts": 3, "dur": 50, "args": {"op_name": "ReorderOutput"}}]
    tensors = {"ReorderInput": (("x",), ("t0",)), "conv2d_5_nchwc": (("t0",), ("t1",)),
               "ReorderOutput": (("t1",), ("y",))}  # ORT's converted Conv writes a tensor of its own
    rows = {r["name"]: r for r in by_component(trace_profile(trace, tensors, 1), component_map)}
    assert list(rows) == ["pw", "layout", OTHER]
    assert rows["pw"]["ms"] == pytest.approx(0.8) and rows["layout"]["ms"] == pytest.approx(0.1)
