"""A row is `ok` only when it is right and undisturbed: outputs gated against PyTorch, one
measurement per core (held with flock, freed even by SIGKILL), the host's load recorded."""

import json
import os
import signal
import subprocess
import sys
import time

import onnx
import pytest

from levit_bench import cli
from levit_bench.exporters.parity import TOLERANCES
from levit_bench.store import open_store
from levit_bench.runners import core_locks, host_load
from levit_bench.runners.core_locks import CoresBusy


def _flip_signs_of_a_weight(onnx_path):
    """Flip the sign bit of every float of the largest initializer, in the file's own bytes,
    then re-stamp the sidecar's sha256: a corrupt artifact that vouches for itself."""
    model = onnx.load(onnx_path)
    largest = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    data = bytearray(onnx_path.read_bytes())
    start = data.find(largest.raw_data)
    assert start > 0 and data.count(largest.raw_data[:4096]) == 1
    for i in range(start + 3, start + len(largest.raw_data), 4):  # little-endian: byte 3 holds the sign
        data[i] ^= 0x80
    onnx_path.write_bytes(bytes(data))
    sidecar_path = onnx_path.with_suffix(".json")
    sidecar = json.loads(sidecar_path.read_text())
    import hashlib

    sidecar["onnx_sha256"] = hashlib.sha256(data).hexdigest()
    sidecar_path.write_text(json.dumps(sidecar))


def test_a_corrupt_weight_that_vouches_for_itself_is_stored_failed(workdir_with_artifact, capsys):
    _flip_signs_of_a_weight(workdir_with_artifact / "models" / "levit_128s.onnx")
    code = cli.main(["--workdir", str(workdir_with_artifact), "run", "--runtime", "onnxruntime", "--platform",
                     "xeon", "--model", "levit_128s", "--protocol", "smoke", "--json"])
    assert code == 1
    (record,) = open_store(workdir_with_artifact).records()
    assert record["status"] == "failed"
    assert record["error"].startswith("outputs differ from PyTorch: max|diff| ")
    assert " > tol " in record["error"] and "top-1 agreement" in record["error"]
    assert record["max_abs_diff"] > TOLERANCES["fp32"].bound(record["max_abs_logit"])
    assert record["top1_agreement"] < 0.5
    assert "outputs differ from PyTorch" in capsys.readouterr().err
    with pytest.raises(Exception, match="no successful measurement"):  # never plotted
        from levit_bench.reports.report import build_report

        build_report(open_store(workdir_with_artifact), workdir_with_artifact / "report")


def test_the_gate_per_precision():
    fp32, bf16 = TOLERANCES["fp32"], TOLERANCES["bf16"]
    assert fp32.violation(1e-5, 3.0, 1.0) is None
    assert fp32.violation(0.30, 3.0, 0.0) == ("outputs differ from PyTorch: max|diff| 0.3 > tol 0.0003, "
                                              "top-1 agreement 0.000 (needs >= 1)")
    assert "top-1 agreement 0.984" in fp32.violation(1e-5, 3.0, 63 / 64)  # one argmax moved is wrong in fp32
    assert bf16.violation(0.05, 3.0, 0.95) is None  # reduced precision: looser, but still gated
    assert bf16.violation(0.05, 3.0, 0.5) is not None and bf16.violation(1.0, 3.0, 1.0) is not None
    assert fp32.violation(float("nan"), 3.0, 1.0) is not None
    assert set(TOLERANCES) >= {"fp32", "bf16", "fp16", "mixed", "int8"}


def test_records_carry_load_and_noisy(workdir_with_artifact, capsys):
    code = cli.main(["--workdir", str(workdir_with_artifact), "run", "--runtime", "onnxruntime", "--platform",
                     "xeon", "--model", "levit_128s", "--protocol", "smoke"])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    assert cli.main(["--workdir", str(workdir_with_artifact), "results", "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert isinstance(record["noisy"], bool)
    load = record["load"]
    for moment in ("before", "after"):
        assert load[moment]["loadavg_1m"] >= 0 and load[moment]["runnable"] >= 1
    assert load["cores"] == record["pinned_cores"] and load["wall_s"] > 0
    assert 0 <= load["other_share"] and load["other_busy_s"] >= 0
    assert record["tolerance"]["top1_agreement"] == 1.0


def _spinner(core):
    """A process burning `core` (pinned there), as a second measurement or a build would."""
    code = f"import os\nos.sched_setaffinity(0, {{{core}}})\nwhile True: pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def test_work_on_the_measured_core_flags_the_measurement_noisy():
    core = max(os.sched_getaffinity(0))
    spinner = _spinner(core)
    try:
        time.sleep(0.5)
        with host_load.watch([core]) as watched:
            time.sleep(1.5)  # this process does nothing: whatever kept the core busy was someone else
    finally:
        spinner.kill()
        spinner.wait()
    assert watched.noisy
    assert watched.load["other_share"] > 0.5
    assert f"of the measured core(s) [{core}]" in watched.noisy_reason


_HOLDER = """
import os, sys, time
from levit_bench.runners import core_locks
with core_locks.reserve([int(sys.argv[1])], 1, wait_timeout_s=0) as cores:
    print("holding", cores[0], flush=True)
    time.sleep(600)
"""


def _hold(core):
    """Another process holding `core`'s lock; returns once it holds it."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(core)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ})
    assert holder.stdout.readline().split() == ["holding", str(core)]
    return holder


def test_two_measurements_never_share_a_core():
    allowed = sorted(os.sched_getaffinity(0))
    holder = _hold(allowed[-1])
    try:
        if len(allowed) > 1:  # another core is free: the second measurement takes it
            with core_locks.reserve(allowed, 1, wait_timeout_s=0) as cores:
                assert cores == [allowed[-2]]
        with pytest.raises(CoresBusy, match=rf"cpu{allowed[-1]} held by pid {holder.pid}"):
            with core_locks.reserve([allowed[-1]], 1, wait_timeout_s=0.5):
                pass
    finally:
        holder.kill()
        holder.wait()


def test_a_run_on_a_one_core_host_waits_for_the_core_then_gives_up_storing_nothing(workdir_with_artifact):
    core = max(os.sched_getaffinity(0))
    holder = _hold(core)
    try:
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "levit_bench", "--workdir", str(workdir_with_artifact), "run", "--runtime",
             "onnxruntime", "--platform", "xeon", "--model", "levit_128s", "--protocol", "smoke",
             "--wait-timeout", "2"],
            capture_output=True, text=True, timeout=300, preexec_fn=lambda: os.sched_setaffinity(0, {core}))
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert run.returncode == 1
    assert f"waiting for a free core (cpu{core} held by pid {holder.pid}" in run.stderr
    assert f"no free core after waiting 2 s (cpu{core} held by pid {holder.pid}" in run.stderr.splitlines()[-1]
    assert waited >= 2
    assert open_store(workdir_with_artifact).records() == []


def test_a_waiting_run_proceeds_when_the_core_is_freed(workdir_with_artifact):
    core = max(os.sched_getaffinity(0))
    holder = _hold(core)
    run = subprocess.Popen(
        [sys.executable, "-m", "levit_bench", "--workdir", str(workdir_with_artifact), "run", "--runtime",
         "onnxruntime", "--platform", "xeon", "--model", "levit_128s", "--protocol", "smoke", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=lambda: os.sched_setaffinity(0, {core}))
    try:
        line = run.stderr.readline()
        assert f"levit_128s: waiting for a free core (cpu{core} held by pid {holder.pid}" in line
    finally:
        holder.kill()  # the holder ends as a crashed run would
        holder.wait()
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    (record,) = json.loads(out)
    assert record["status"] == "ok" and record["pinned_cores"] == [core]


def test_a_sigkilled_holder_frees_its_core():
    core = max(os.sched_getaffinity(0))
    holder = _hold(core)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    started = time.monotonic()
    with core_locks.reserve([core], 1, wait_timeout_s=5) as cores:
        assert cores == [core]
    assert time.monotonic() - started < 1
    assert core_locks.holder(f"cpu{core}") == "unknown"  # a released lock names nobody


def test_smt_siblings_are_locked_together(monkeypatch):
    """On a host whose CPUs 0 and 1 are one physical core, a measurement on either holds both."""
    monkeypatch.setattr(core_locks, "physical_core", lambda cpu: (0, 1) if cpu in (0, 1) else (cpu,))
    with core_locks.reserve([0, 1], 1, wait_timeout_s=0) as cores:
        assert cores == [1]  # one CPU of the core to pin to
        assert core_locks.holder("cpu0").startswith(f"pid {os.getpid()}")
        with pytest.raises(CoresBusy, match="no free core after waiting 0 s"):
            with core_locks.reserve([0], 1, wait_timeout_s=0):
                pass
        with pytest.raises(core_locks.LevitBenchError, match="may use only 1"):
            with core_locks.reserve([0, 1], 2, wait_timeout_s=0):
                pass
    cpu = max(os.sched_getaffinity(0))
    assert cpu in core_locks.physical_core(cpu)  # this host's topology, read from sysfs


def test_a_noisy_record_is_shown_as_such_in_results_and_the_report(tmp_path, capsys):
    from records import make_record

    store = open_store(tmp_path / "work")
    store.insert(make_record(noisy=True, noisy_reason="other work used 50% of the measured core(s) [1]",
                             load={"other_share": 0.5}))
    store.insert(make_record(model="levit_192", noisy=False, load={"other_share": 0.0}))
    assert cli.main(["--workdir", str(tmp_path / "work"), "results"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "levit_" in line]
    assert ["(noisy)" in row for row in rows] == [True, False]
    assert cli.main(["--workdir", str(tmp_path / "work"), "report", "--out", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert 'title="round 1: other load on its core (other work used 50% of the measured core(s) [1])">noisy</td>' in page
    assert ">quiet</td>" in page
    assert "1 of these points failed a stability check" in page
