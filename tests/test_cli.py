"""The `levit-bench` command as a user runs it: a real process, its stdout, stderr and status."""

import json
import os
import subprocess
import sys
import time

import pytest

from levit_bench.registry import model_names


def run(*args: str, cache=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "LEVIT_BENCH_CACHE": str(cache)} if cache else None
    return subprocess.run([sys.executable, "-m", "levit_bench", *args], capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A cache holding this host's calibration, measured once for the module's tests."""
    cache = tmp_path_factory.mktemp("calibrated")
    result = run("calibrate", "--json", cache=cache)
    assert result.returncode == 0, result.stderr
    return cache, json.loads(result.stdout)


def test_calibrate_measures_positive_peaks_and_caches_them(calibrated):
    cache, peak = calibrated
    assert peak["fma_gflops"] > 0 and peak["fma"]["vector_bits"] in (128, 256, 512)
    assert peak["memory_gbps"] > 0
    assert peak["gemm_gflops"] and all(g > 0 for g in peak["gemm_gflops"].values())
    assert {"torch", "onnxruntime", "openvino"} <= set(peak["gemm_gflops"])
    # a core cannot multiply-add faster than its FMA units: the best f32 GEMM stays below the peak
    f32 = [g for library, g in peak["gemm_gflops"].items() if not library.endswith(("bf16", "int8"))]
    assert max(f32) <= peak["fma_gflops"] * 1.05
    assert list(cache.glob("calibration/*.json"))
    started = time.monotonic()
    again = run("calibrate", "--json", cache=cache)
    assert json.loads(again.stdout) == peak and time.monotonic() - started < 30  # read, not measured again


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


def test_info_json_describes_host_versions_and_peak(calibrated):
    cache, peak = calibrated
    result = run("info", "--json", cache=cache)
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
    assert info["peak"] == peak and {"fma_gflops", "gemm_gflops", "memory_gbps"} <= set(info["peak"])


def test_info_table(calibrated):
    result = run("info", cache=calibrated[0])
    assert result.returncode == 0, result.stderr
    for label in ("CPU", "ISA", "memory", "OS", "torch", "openvino", "tvm", "FMA peak", "GEMM onnxruntime"):
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
