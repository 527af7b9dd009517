"""A profile of your own ONNX model gives every op-type component with multiply-adds its FLOPs,
however the file names its nodes (ONNX names them optionally, and not uniquely)."""

import json
from pathlib import Path

import onnx
import pytest
from test_user_onnx import RESOLUTION, TinyNet, _export

from levit_bench import cli, registry
from levit_bench.exporters.onnx_facts import graph_work_per_image, inspect_onnx
from levit_bench.models.counting import count_macs
from levit_bench.store import open_store

# TinyNet's multiply-adds per image, by op type: its two convolutions (output elements x C_in/groups
# x kernel), its Linear (a Gemm) and its MatMul (their biases and ReLUs, fused into them, are in
# their components and add no multiply-adds)
MACS = {"Conv": 8 * 16 * 16 * 3 * 9 + 16 * 8 * 8 * 4 * 9, "Gemm": 16 * 10, "MatMul": 10 * 10}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    return _export(tmp_path_factory.mktemp("flops") / "exported.onnx")


def _renamed(source: Path, path: Path, naming: str) -> Path:
    """`source` with its nodes named as another exporter or a hand edit leaves them."""
    model = onnx.load(str(source))
    for node in model.graph.node:
        if naming == "unnamed" or (naming == "conv unnamed" and node.op_type == "Conv"):
            node.name = ""
        elif naming == "one name":
            node.name = "node"
    onnx.save(model, str(path))
    return path


def _profile(work: Path, path: Path, name: str, *json_flag: str) -> list[str]:
    return ["--workdir", str(work), "profile", "--onnx", str(path), "--name", name, "--runtime", "onnxruntime",
            "--platform", "xeon", "--protocol", "smoke", *json_flag]


@pytest.mark.parametrize("naming", ["as exported", "conv unnamed", "unnamed", "one name"])
def test_every_component_with_macs_gets_its_flops_from_the_graph(exported, naming, tmp_path, capsys):
    path = _renamed(exported, tmp_path / "net.onnx", naming)
    work = tmp_path / "work"
    name = f"flops_{naming.replace(' ', '_')}"  # a name per file: work per image is cached by model name
    macs_per_image = count_macs(TinyNet(), RESOLUTION)  # FlopCounterMode on the module exported
    assert sum(MACS.values()) == macs_per_image == inspect_onnx(path).macs
    flops = {op: 2 * macs for op, macs in MACS.items()}
    assert graph_work_per_image(path)[0] == flops
    try:
        assert cli.main(_profile(work, path, name, "--json")) == 0
        result = json.loads(capsys.readouterr().out)
        assert cli.main(_profile(work, path, name)) == 0
        table = capsys.readouterr().out
    finally:
        registry.unregister_model(name)

    stored = {record["uid"]: record for record in open_store(work).profile_records(name)}
    assert len(stored) == 2 and stored[result["uid"]]["components"] == result["components"]
    components = {row["name"]: row for row in result["components"]}
    for op, expected in flops.items():
        row = components[op]
        assert row["kernels"] >= 1 and row["flops_per_image"] == expected  # integer counts: exact
        # GFLOP/s: the batch's FLOPs over the component's ms per call, rounded to 0.01
        assert row["gflops"] > 0
        assert row["gflops"] == pytest.approx(expected * result["batch"] / (row["ms"] / 1e3) / 1e9, abs=0.006)
    # nothing counted elsewhere: the components' FLOPs per image are 2 x the graph's MACs per image
    assert sum(row.get("flops_per_image") or 0 for row in result["components"]) == 2 * macs_per_image
    assert all(row["gflops"] is None for op, row in components.items() if op not in flops)

    # the human table tells Conv's GFLOP/s, not `-`
    rows = {cells[1]: cells[2:] for cells in ([c.strip() for c in line.split("│")] for line in table.splitlines())
            if len(cells) == 7}  # │ component │ ms / call │ share │ GFLOP/s │ kernels │
    assert all(float(rows[op][2]) > 0 for op in flops), table
