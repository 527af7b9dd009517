"""Runners against the PyTorch reference; platforms; precision recorded as it ran."""

import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from levit_bench.environment import host_info
from levit_bench.exporters.parity import seeded_images
from levit_bench.exporters.pipeline import model_from_sidecar
from levit_bench.platforms import PlatformError, get_platform
from levit_bench.store import open_store
from levit_bench.runners import core_locks
from levit_bench.runners.artifacts import find_artifact
from levit_bench.runners.base import RunnerError
from levit_bench.runners.session import RunRequest, run_cell
from levit_bench.runtimes import get_runtime

CASES = [("torch", "traced"), ("torch", "eager"), ("torch", "unfused"), ("onnxruntime", None), ("openvino", None)]


def _run(workdir, runtime, mode=None, precision=None, platform="xeon"):
    request = RunRequest("levit_128s", runtime, platform, mode=mode, precision=precision, protocol="smoke")
    record = run_cell(request, workdir)
    open_store(workdir).insert(record)
    return record


@pytest.mark.parametrize("runtime,mode", CASES)
def test_runner_output_matches_the_unfused_reference(workdir_with_artifact, runtime, mode):
    artifact = find_artifact(workdir_with_artifact, "levit_128s", 16)
    cls = get_runtime(runtime).runner_class()
    runner = cls(get_platform("xeon"), cls.Options(mode=mode))  # every runner is made the same way
    images = seeded_images(16, 224, seed=3).numpy()
    with core_locks.pinned(get_platform("xeon")):
        runner.load(artifact, 16)
        outputs = runner.to_numpy(runner(runner.to_input(images)))
    runner.close()
    with torch.no_grad():
        expected = model_from_sidecar(artifact.sidecar)(torch.from_numpy(images)).numpy()
    assert outputs.shape == (16, 1000)
    assert np.abs(outputs - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())
    assert (outputs.argmax(1) == expected.argmax(1)).all()
    description = runner.describe()
    assert description.runtime == runtime and description.precision == "fp32" and description.threads == 1
    assert description.version


@pytest.mark.parametrize("runtime,mode", CASES)
def test_run_records_everything(workdir_with_artifact, runtime, mode):
    record = _run(workdir_with_artifact, runtime, mode)
    assert record["status"] == "ok", record.get("error")
    assert record["precision"] == "fp32" and record["threads"] == 1 and record["batch"] == 16
    assert record["mode"] == mode
    assert len(record["pinned_cores"]) == 1 and record["pinned_cores"][0] in os.sched_getaffinity(0)
    assert record["max_abs_diff"] <= 1e-4 * max(1.0, record["max_abs_logit"])
    assert record["top1_agreement"] == 1.0 and record["parity_images"] == 16
    assert len(record["samples_ms"]) == record["n_samples"] >= 3
    assert record["images_per_s"] == pytest.approx(16 / (record["median_ms"] / 1e3))
    assert record["load_s"] > 0 and record["first_inference_s"] > 0
    assert record["cpu_model"] == host_info().cpu_model  # the real CPU, whatever the platform's name
    assert record["artifact_sha256"] == find_artifact(workdir_with_artifact, "levit_128s", 16).sha256
    assert record["versions"][runtime] == record["runtime_version"]
    assert record["peak_rss_mb"] > 0 and record["load_rss_mb"] is not None and record["peak_since_load"]
    assert record["malloc"] == {"allocator": "glibc", "M_MMAP_MAX": 0, "M_TRIM_THRESHOLD": 2**31 - 1}
    stored = open_store(workdir_with_artifact).records()
    assert [r["uid"] for r in stored] == [record["uid"]]


def _capabilities():
    import openvino as ov

    return ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.mark.parametrize("precision,capability", [("bf16", "BF16"), ("fp16", "FP16")])
def test_openvino_lower_precision_is_recorded_as_it_ran_or_refused(workdir_with_artifact, precision, capability):
    if capability not in _capabilities():  # OpenVINO would quietly run something else: refused, nothing stored
        with pytest.raises(RunnerError, match=f"cannot run openvino in {precision}"):
            _run(workdir_with_artifact, "openvino", precision=precision)
        assert open_store(workdir_with_artifact).records() == []
        return
    record = _run(workdir_with_artifact, "openvino", precision=precision)
    assert record["status"] == "ok" and record["precision"] == precision
    assert record["runtime_info"]["details"]["INFERENCE_PRECISION_HINT"] in ("bf16", "f16")
    f32 = _run(workdir_with_artifact, "openvino")
    assert record["max_abs_diff"] > 10 * f32["max_abs_diff"]  # it really ran in lower precision


def test_openvino_default_is_f32_not_the_cpu_default(workdir_with_artifact):
    record = _run(workdir_with_artifact, "openvino")
    assert record["precision"] == "fp32"
    assert record["runtime_info"]["details"]["INFERENCE_PRECISION_HINT"] == "f32"


def test_runtimes_refuse_precisions_they_do_not_run_and_store_nothing(workdir_with_artifact):
    for runtime in ("onnxruntime", "torch"):
        with pytest.raises(RunnerError, match="bf16"):
            _run(workdir_with_artifact, runtime, precision="bf16")
    assert open_store(workdir_with_artifact).records() == []


def test_arm_is_refused_on_x86_and_stores_nothing(workdir_with_artifact):
    native_arm = host_info().architecture in ("aarch64", "arm64")
    for runtime in ("torch", "onnxruntime", "openvino"):
        if native_arm:
            assert _run(workdir_with_artifact, runtime, platform="arm")["status"] == "ok"
        else:
            with pytest.raises(PlatformError, match=r"platform arm needs an aarch64 CPU with NEON to run"):
                _run(workdir_with_artifact, runtime, platform="graviton")
    if not native_arm:
        assert open_store(workdir_with_artifact).records() == []


def test_platform_checks_against_other_hosts():
    host = host_info()
    arm_host = dataclasses.replace(host, architecture="aarch64", isa=("neon", "asimd"), gpu=None)
    x86_host = dataclasses.replace(host, architecture="x86_64", isa=("avx2",), gpu=None)
    get_platform("arm").check_host(arm_host, "onnxruntime")
    get_platform("xeon").check_host(x86_host, "onnxruntime")
    with pytest.raises(PlatformError, match="platform xeon needs an x86-64 CPU; this host is aarch64"):
        get_platform("xeon").check_host(arm_host, "torch")
    with pytest.raises(PlatformError, match="needs a CUDA GPU"):
        get_platform("gpu").check_host(x86_host, "torch")
    no_neon = dataclasses.replace(arm_host, isa=())
    with pytest.raises(PlatformError, match="NEON"):
        get_platform("arm").check_host(no_neon, "openvino")


def test_gpu_is_refused_without_cuda(workdir_with_artifact):
    if torch.cuda.is_available():
        assert _run(workdir_with_artifact, "torch", platform="gpu")["status"] == "ok"
    else:
        with pytest.raises(PlatformError, match="platform gpu needs a CUDA GPU; torch sees none"):
            _run(workdir_with_artifact, "torch", platform="gpu")


def test_openvino_is_cpu_only_and_unknown_names():
    with pytest.raises(RunnerError, match="openvino is measured on the CPU platforms"):
        cls = get_runtime("openvino").runner_class()
        cls(get_platform("gpu"), cls.Options())
    with pytest.raises(PlatformError, match="unknown platform 'tpu'; known platforms: xeon, arm, gpu"):
        get_platform("tpu")
    assert get_platform("graviton") is get_platform("arm")


def test_pinning_restores_the_affinity():
    before = os.sched_getaffinity(0)
    with core_locks.pinned(get_platform("xeon")) as cores:
        assert os.sched_getaffinity(0) == set(cores) and len(cores) == 1
    assert os.sched_getaffinity(0) == before


def test_a_torch_cell_reads_its_checkpoint_once(workdir_with_artifact, monkeypatch):
    """Naming the artifact, building the runner's model and the parity reference all need the
    weights: the file is read (and hashed) once, and the reference model is built once."""
    from levit_bench.exporters import pipeline
    from levit_bench.models import checkpoints

    weights = find_artifact(workdir_with_artifact, "levit_128s", 16).weights["path"]
    os.utime(weights)  # a new mtime: nothing this process read before counts as this file
    reads, builds = [], []
    read_state_dict, load_model = checkpoints.read_state_dict, pipeline.load_model
    monkeypatch.setattr(checkpoints, "read_state_dict", lambda path: reads.append(path) or read_state_dict(path))
    monkeypatch.setattr(pipeline, "load_model", lambda *a, **k: builds.append(a) or load_model(*a, **k))
    request = RunRequest("levit_128s", "torch", "xeon", mode="eager", protocol="smoke", weights=weights)
    record = run_cell(request, workdir_with_artifact)
    assert record["status"] == "ok", record.get("error")
    assert record["weights"]["path"] == weights
    assert len(reads) == 1 and len(builds) == 1


def test_a_record_carries_its_gflops_and_its_share_of_the_calibrated_peak(workdir_with_artifact):
    import json

    from levit_bench.registry import get_spec
    from levit_bench.workdir import cache_dir

    uncalibrated = _run(workdir_with_artifact, "onnxruntime")
    macs = get_spec("levit_128s").measured_counts()[1]
    assert uncalibrated["gflops"] == pytest.approx(2 * macs * uncalibrated["images_per_s"] / 1e9, rel=1e-3)
    assert uncalibrated["peak_fraction"] is None  # this host was never calibrated (the test's own cache)
    calibration = cache_dir() / "calibration" / f"{host_info().fingerprint}.json"
    calibration.parent.mkdir(parents=True)
    calibration.write_text(json.dumps({"fma_gflops": 500.0}))  # what `calibrate` would have cached
    record = _run(workdir_with_artifact, "onnxruntime")
    assert record["peak_fma_gflops"] == 500.0 and record["peak_fraction"] == pytest.approx(record["gflops"] / 500.0,
                                                                                            abs=1e-4)


def test_a_cells_peak_memory_starts_at_its_load():
    import subprocess
    import sys

    code = """
import json, numpy as np
from levit_bench.runners.memory import MemoryWatch, resident_mb
earlier = np.ones(400 * 2**20 // 8)  # 400 MiB touched and freed before the model loads
del earlier
watch = MemoryWatch.start()
loaded = np.ones(100 * 2**20 // 8)  # a 100 MiB model
watch.loaded()
print(json.dumps({**watch.fields(), "before": watch.before_mb, "now": resident_mb()}))
"""
    # a fresh process, as a cell's: a test process's allocator may hold memory freed by other tests
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    fields = json.loads(done.stdout)
    assert fields["peak_since_load"]
    assert 95 < fields["load_rss_mb"] < 110
    assert fields["now"] - 1 <= fields["peak_rss_mb"] < fields["before"] + 200  # the earlier 400 MiB is not counted
