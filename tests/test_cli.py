"""The `levit-bench` command as a user runs it: a real process, its stdout, stderr and status."""

import json
import subprocess
import sys

import pytest

from levit_bench.registry import model_names


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "levit_bench", *args], capture_output=True, text=True,
                          timeout=300)


def test_models_json_lists_every_model_with_measured_counts():
    result = run("models", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 15
    assert [r["name"] for r in rows[:5]] == ["levit_128s", "levit_128", "levit_192", "levit_256", "levit_384"]
    assert {r["family"] for r in rows} == {"levit", "efficientnet", "deit", "mobilevit"}
    assert [r["resolution"] for r in rows if r["family"] == "efficientnet"] == [224, 240, 260, 300, 380]
    assert {r["resolution"] for r in rows if r["family"] == "mobilevit"} == {256}
    for row in rows[:5]:
        assert row["family"] == "levit" and row["resolution"] == 224
        assert isinstance(row["params"], int) and isinstance(row["macs"], int)
        assert row["top1_source"] == "reported" and isinstance(row["top1"], float)
        # measured, so not the rounded published figure
        assert row["params"] != row["reported"]["params"] and row["macs"] != row["reported"]["macs"]
        assert set(row["reported"]["images_per_s"]) == {"gpu", "xeon", "arm"}
        assert "Table 3" in row["reported"]["source"]
    by_name = {r["name"]: r for r in rows}
    assert by_name["levit_128s"]["params"] == 7_777_058


def test_models_table_and_filter():
    result = run("models", "LeViT-192", "levit_128s")
    assert result.returncode == 0, result.stderr
    assert "levit_192" in result.stdout and "levit_128s" in result.stdout
    assert "levit_384" not in result.stdout
    assert "Table 3" in result.stdout


def test_unknown_model_gets_the_known_ones_in_one_line():
    result = run("models", "levit_999")
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "unknown model 'levit_999'" in lines[0]
    for name in model_names():
        assert name in lines[0]


def test_info_json_describes_host_and_versions():
    result = run("info", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    host = info["host"]
    assert host["cpu_model"] and host["architecture"]
    assert host["logical_cores"] >= 1 and host["memory_bytes"] > 0
    assert isinstance(host["isa"], list) and host["os"]
    assert len(host["fingerprint"]) == 12
    if host["architecture"] == "x86_64":
        assert "avx2" in host["isa"] or "sse4_2" in host["isa"]
    for package in ("python", "levit-bench", "torch", "onnx", "onnxruntime", "openvino", "tvm"):
        assert package in info["versions"]
    assert info["versions"]["torch"].startswith("2.")


def test_info_table():
    result = run("info")
    assert result.returncode == 0, result.stderr
    for label in ("CPU", "ISA", "memory", "OS", "torch", "openvino", "tvm"):
        assert label in result.stdout


@pytest.mark.parametrize("args", [["nonsense"], ["models", "--bogus"], []])
def test_usage_errors_are_one_line(args):
    result = run(*args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "see levit-bench" in result.stderr and "--help" in result.stderr


@pytest.mark.parametrize("command", ["models", "info"])
def test_every_command_has_help(command):
    result = run(command, "--help")
    assert result.returncode == 0
    assert "usage: levit-bench" in result.stdout and "--json" in result.stdout
