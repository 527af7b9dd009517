"""Bad input and faults: a one-line reason and a non-zero exit, no row for an invalid request,
no partial file, nothing measured lost; each case here was once handled wrong."""

import contextlib
import errno
import hashlib
import json
import os
import pathlib
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import psutil
import pytest
import torch

from levit_bench.models.checkpoints import save_weights
from levit_bench.registry import get_spec
from levit_bench.store import ResultsStore, open_store
from levit_bench.runners.session import RunRequest, RunSettings
from levit_bench.runners.sweep import Cell, resume_key
from records import make_record as _record
from cli_support import run_cli


def _main(capsys, *args) -> tuple[int, str]:
    """Run the CLI in this process: (exit status, stderr)."""
    code, _, err = run_cli(capsys, *args)
    return code, err


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# ---- the results store ---------------------------------------------------------------------


def test_merge_takes_a_path_with_a_hash_sign_as_it_is(tmp_path, capsys):
    odd = tmp_path / "dir" / "we#ird.db"
    ResultsStore(odd).insert(_record())
    code, err = _main(capsys, "--workdir", tmp_path / "work", "results", "merge", odd)
    assert code == 0, err
    assert "1 new rows" in err
    assert not (tmp_path / "dir" / "we").exists()
    assert len(open_store(tmp_path / "work").records()) == 1


def test_merging_unreadable_rows_or_schema_is_one_line_and_merges_nothing(tmp_path, capsys):
    other = tmp_path / "other.db"
    ResultsStore(other).insert(_record())
    with sqlite3.connect(other) as db:
        db.execute("UPDATE measurements SET record_json = '{not json'")
    code, err = _main(capsys, "--workdir", tmp_path / "work", "results", "merge", other)
    assert code == 1 and "row 1 of measurements is not JSON" in _one_line(err) and "nothing merged" in err
    with sqlite3.connect(other) as db:
        db.execute("UPDATE measurements SET record_json = ?", (json.dumps({"model": "levit_128s"}),))
    code, err = _main(capsys, "--workdir", tmp_path / "work", "results", "merge", other)
    assert code == 1 and "lacks uid" in _one_line(err)
    with sqlite3.connect(other) as db:
        db.execute("UPDATE meta SET value = 'two' WHERE key = 'schema_version'")
    code, err = _main(capsys, "--workdir", tmp_path / "work", "results", "merge", other)
    assert code == 1 and "unknown schema version 'two'" in _one_line(err)
    assert open_store(tmp_path / "work").records() == []


def _damage_every_page_but_the_schema(db_path: pathlib.Path) -> None:
    """Overwrite every page except sqlite_master's and the meta table's: the store opens, and
    writing a row then finds a malformed database."""
    with sqlite3.connect(db_path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        roots = dict(db.execute("SELECT name, rootpage FROM sqlite_master"))
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
    keep = {1, roots["meta"], roots["sqlite_autoindex_meta_1"]}
    data = bytearray(db_path.read_bytes())
    for page in range(1, len(data) // page_size + 1):
        if page not in keep:
            data[(page - 1) * page_size:page * page_size] = b"\xff" * page_size
    db_path.write_bytes(bytes(data))


def test_a_damaged_store_is_refused_before_measuring(workdir_with_artifact, capsys, monkeypatch):
    store = open_store(workdir_with_artifact)
    for _ in range(40):
        store.insert(_record(error="x" * 400))
    _damage_every_page_but_the_schema(store.path)
    _never_measure(monkeypatch)
    code, err = _main(capsys, "--workdir", workdir_with_artifact, "run", "--runtime", "onnxruntime",
                      "--platform", "xeon", "--model", "levit_128s", "--protocol", "smoke")
    assert code == 1 and "cannot be used (database disk image is malformed)" in _one_line(err)
    code, err = _main(capsys, "--workdir", workdir_with_artifact, "results")
    assert code == 1 and "cannot be used" in _one_line(err)


# ---- artifacts and checkpoints -------------------------------------------------------------


def test_a_damaged_default_artifact_is_exported_again_from_its_own_weights(workdir_with_artifact, capsys):
    onnx_path = workdir_with_artifact / "models" / "levit_128s.onnx"
    sidecar = json.loads(onnx_path.with_suffix(".json").read_text())
    assert sidecar["weights"]["source"] != "random-init"
    onnx_path.write_bytes(onnx_path.read_bytes()[:1000])  # truncated
    code, err = _main(capsys, "--workdir", workdir_with_artifact, "run", "--runtime", "onnxruntime",
                      "--platform", "xeon", "--model", "levit_128s", "--protocol", "smoke")
    assert code == 0, err
    assert f"{onnx_path} failed its sha256 check; exported it again from the same weights" in err
    (record,) = open_store(workdir_with_artifact).records()
    assert record["status"] == "ok" and record["weights"]["sha256"] == sidecar["weights"]["sha256"]
    assert hashlib.sha256(onnx_path.read_bytes()).hexdigest() == record["artifact_sha256"]


def test_a_damaged_default_whose_checkpoint_is_gone_is_refused(workdir_with_artifact, tmp_path, capsys):
    onnx_path = workdir_with_artifact / "models" / "levit_128s.onnx"
    sidecar = json.loads(onnx_path.with_suffix(".json").read_text())
    sidecar["weights"]["path"] = str(tmp_path / "gone.safetensors")
    onnx_path.with_suffix(".json").write_text(json.dumps(sidecar))
    onnx_path.write_bytes(b"")
    code, err = _main(capsys, "--workdir", workdir_with_artifact, "run", "--runtime", "onnxruntime",
                      "--platform", "xeon", "--model", "levit_128s", "--protocol", "smoke")
    assert code == 1
    assert "is damaged and the checkpoint it was exported from" in _one_line(err) and "gone.safetensors" in err
    assert open_store(workdir_with_artifact).records() == []


def test_a_text_file_as_weights_is_one_line(tmp_path, capsys):
    text = tmp_path / "weights.pth"
    text.write_text("these are not weights\n")
    code, err = _main(capsys, "export", "--model", "levit_128s", "--weights", text, "--out", tmp_path / "out")
    assert code == 1
    assert "not a PyTorch checkpoint or safetensors file" in _one_line(err)
    assert not (tmp_path / "out" / "levit_128s.onnx").exists()


class _System:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_an_os_system_payload_is_named(tmp_path, capsys):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _System(f"touch {marker}")}, evil)
    code, err = _main(capsys, "export", "--model", "levit_128s", "--weights", evil, "--out", tmp_path / "out")
    assert code == 1
    assert "it calls posix.system" in _one_line(err) and "refusing to load" in err
    assert not marker.exists()


def test_a_half_precision_checkpoint_is_recorded_and_said(tmp_path, capsys):
    model = get_spec("levit_128s").build().half()
    checkpoint = tmp_path / "half.safetensors"
    save_weights(model, checkpoint, "levit_128s")
    out = tmp_path / "out"
    out.mkdir()
    stale, fresh = out / ".levit_128s.onnx.killed.part", out / ".levit_128s.onnx.writing.part"
    stale.write_bytes(b"left by a killed export")
    fresh.write_bytes(b"another export writing now")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    code, err = _main(capsys, "export", "--model", "levit_128s", "--weights", checkpoint, "--out", out)
    assert code == 0, err
    sidecar = json.loads((out / "levit_128s.json").read_text())
    assert sidecar["weights"]["dtype"] == "float16"
    assert not stale.exists() and fresh.exists()  # a young part may belong to a live writer
    umask = os.umask(0)
    os.umask(umask)
    for written in (out / "levit_128s.onnx", out / "levit_128s.json"):
        assert written.stat().st_mode & 0o777 == 0o666 & ~umask


def test_the_export_summary_says_the_checkpoint_was_half_precision(tmp_path, capsys):
    from levit_bench.views import print_export
    from rich.console import Console

    sidecar = {"model": "levit_128s", "weights": {"source": "half.pth", "layout": "native", "sha256": "a" * 64,
                                                  "dtype": "bfloat16"},
               "op_histogram": {}, "timings_s": {}, "onnx_bytes": 1, "onnx_sha256": "b" * 64, "input_name": "x",
               "input_shape": [16, 3, 224, 224], "opset": 18, "exporter": "e", "simplified": True,
               "parity": {"max_abs_diff": 0, "tolerance": 1, "top1_agreement": 1, "inputs": 64, "runtime": "r",
                          "reference": "p"},
               "fused_vs_unfused": {"max_abs_diff": 0, "relative": 0}}
    console = Console(record=True, width=200)
    print_export(sidecar, "x.onnx", console)
    assert "stored as bfloat16, upcast to float32 for export" in console.export_text()


def test_no_space_left_during_export_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    def full_disk(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pathlib.Path, "write_bytes", full_disk)
    out = tmp_path / "out"
    code, err = _main(capsys, "export", "--model", "levit_128s", "--out", out)
    assert code == 1
    assert f"cannot write {out / 'levit_128s.onnx'}: No space left on device" in _one_line(err)
    assert list(out.iterdir()) == []


# ---- requests that cannot be a cell --------------------------------------------------------


@pytest.mark.parametrize("args", [
    ("run", "--runtime", "onnxruntime", "--platform", "xeon", "--model", "levit_128s", "--batch", "0"),
    ("sweep", "--platform", "xeon", "--models", "levit_128s", "--runtimes", "onnxruntime", "--batch", "-1"),
    ("export", "--model", "levit_128s", "--batch", "0"),
    ("tune", "--model", "levit_128s", "--platform", "xeon", "--batch", "0"),
])
def test_a_batch_below_one_is_refused(workdir_with_artifact, capsys, args):
    code, err = _main(capsys, "--workdir", workdir_with_artifact, *args)
    assert code == 2 and "must be at least 1" in _one_line(err)
    assert open_store(workdir_with_artifact).records() == []
    with pytest.raises(Exception, match="the batch must be a positive integer, not 0"):
        RunRequest("levit_128s", "onnxruntime", "xeon", batch=0)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("runtime,platform,rpc,message", [
    ("tvm", "arm", "nonsense", "an RPC address is HOST:PORT with a port from 1 to 65535, not 'nonsense'"),
    ("tvm", "arm", "127.0.0.1:70000", "with a port from 1 to 65535, not '127.0.0.1:70000'"),
    ("tvm", "arm", "CLOSED", "no TVM RPC server at 127.0.0.1:"),
    ("tvm", "xeon", "127.0.0.1:9090", "use it with --platform arm, not xeon"),
    ("onnxruntime", "xeon", "127.0.0.1:9090", "--rpc: not an option of onnxruntime"),
    ("executorch", "arm", "127.0.0.1:9090", "executorch has no RPC server: --rpc emulator runs its aarch64 runtime"),
    ("executorch", "xeon", "emulator", "--rpc emulator runs executorch's aarch64 runtime: use it with --platform arm"),
])
def test_bad_rpc_requests_are_refused_at_once_storing_nothing(workdir_with_artifact, capsys, runtime, platform,
                                                              rpc, message):
    rpc = f"127.0.0.1:{_closed_port()}" if rpc == "CLOSED" else rpc
    started = time.monotonic()
    code, err = _main(capsys, "--workdir", workdir_with_artifact, "run", "--runtime", runtime, "--platform",
                      platform, "--model", "levit_128s", "--rpc", rpc)
    assert code == 1 and message in _one_line(err)
    assert time.monotonic() - started < 10  # nothing compiled first
    assert open_store(workdir_with_artifact).records() == []


def test_a_sweep_refuses_a_precision_a_runtime_lacks_before_any_cell(workdir_with_artifact, capsys):
    code, err = _main(capsys, "--workdir", workdir_with_artifact, "sweep", "--platform", "xeon", "--models",
                      "levit_128s", "--runtimes", "onnxruntime", "openvino", "--precision", "bf16",
                      "--protocol", "smoke")
    assert code == 1 and "onnxruntime runs fp32 or int8, not bf16" in _one_line(err)
    assert open_store(workdir_with_artifact).records() == []


def test_one_class_is_not_a_training_set(tmp_path, capsys):
    from PIL import Image

    for split in ("train", "val"):
        (tmp_path / "data" / split / "only").mkdir(parents=True)
        Image.new("RGB", (32, 32), "red").save(tmp_path / "data" / split / "only" / "a.png")
    code, err = _main(capsys, "train", "--model", "levit_128s", "--data", tmp_path / "data",
                      "--out", tmp_path / "run", "--epochs", "1")
    assert code == 1 and "has 1 class; training needs at least 2" in _one_line(err)


# ---- reports -------------------------------------------------------------------------------


def test_a_hostile_platform_name_stays_inside_the_report_directory(tmp_path, capsys):
    other = tmp_path / "other.db"
    ResultsStore(other).insert(_record(platform="../../x<script>"))
    work = tmp_path / "a" / "b" / "work"
    assert _main(capsys, "--workdir", work, "results", "merge", other)[0] == 0
    code, err = _main(capsys, "--workdir", work, "report", "--out", work / "report")
    assert code == 0, err
    assert (work / "report" / "tradeoff-x-script.png").is_file()
    assert not list(tmp_path.rglob("x<script>*")) and not list(tmp_path.glob("**/tradeoff-..*"))
    assert "x&lt;script&gt;" in (work / "report" / "index.html").read_text()


# ---- sweeps --------------------------------------------------------------------------------


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:  # gone already (the calibration's compiler)
        return []


def test_sigterm_ends_the_sweep_and_its_running_cell(workdir_with_artifact):
    sweep = subprocess.Popen(
        [sys.executable, "-m", "levit_bench", "--workdir", str(workdir_with_artifact), "sweep", "--platform",
         "xeon", "--models", "levit_128s", "--runtimes", "onnxruntime"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180  # the host is calibrated first (this test's own cache)
    children = []
    while not children:
        assert sweep.poll() is None and time.monotonic() < deadline, "no cell started"
        children = [child for child in psutil.Process(sweep.pid).children()
                    if "levit_bench.runners.worker" in " ".join(_cmdline(child))]
        time.sleep(0.1)
    cell = children[0]
    sweep.send_signal(signal.SIGTERM)
    _, err = sweep.communicate(timeout=60)
    assert sweep.returncode == 130 and "interrupted" in err
    assert not cell.is_running() or cell.status() == psutil.STATUS_ZOMBIE


def test_a_gpu_sweep_finds_its_finished_cells_again(workdir_with_artifact):
    """The GPU's batch is searched and ORT runs its `mixed` default in fp32: the resume key
    compares those effective settings with what the finished row holds."""
    dynamic = workdir_with_artifact / "models" / "batch-dynamic"
    dynamic.mkdir()
    data = b"a stand-in for a dynamic-batch export"
    (dynamic / "levit_128s.onnx").write_bytes(data)
    sidecar = {"model": "levit_128s", "onnx_sha256": hashlib.sha256(data).hexdigest(),
               "input_shape": ["batch", 3, 224, 224], "weights": {"source": "random-init", "seed": 0}}
    (dynamic / "levit_128s.json").write_text(json.dumps(sidecar))
    request = RunRequest("levit_128s", "onnxruntime", "gpu")
    assert RunSettings.of(request).key() == {"batch": None, "precision": "fp32", "mode": None, "protocol": "default",
                                             "cores": None, "streams": 1, "scenario": None,
                                             "scenario_settings": None}
    from levit_bench import environment

    host = environment.host_info()
    store = open_store(workdir_with_artifact)
    store.insert(_record(platform="gpu", batch=512, precision="fp32", cores=None, host=host.fingerprint,
                         artifact_sha256=sidecar["onnx_sha256"],
                         runtime_version=environment.package_versions()["onnxruntime"]))
    key = resume_key(Cell("levit_128s", "onnxruntime"), request, workdir_with_artifact, host)
    assert store.has_ok(key)
    assert not store.has_ok({**key, "precision": "mixed"})  # what the request alone says: no match


@pytest.mark.parametrize("argv,message", [
    (["run", "--runtime", "onnxruntime", "--mode", "eager"], "--mode applies to torch, tvm, not onnxruntime"),
    (["run", "--runtime", "torch", "--mode", "tuned"],
     "torch modes are traced, eager, unfused, compiled, compiled-max-autotune, not tuned"),
    (["sweep", "--runtimes", "onnxruntime", "--mcpu", "znver4"], "--mcpu: not an option of onnxruntime"),
])
def test_a_refused_request_leaves_no_file_behind(tmp_path, capsys, argv, message):
    work = tmp_path / "fresh"
    code, err = _main(capsys, "--workdir", work, *argv, "--platform", "xeon",
                      "--models" if argv[0] == "sweep" else "--model", "levit_128s")
    assert code == 1 and _one_line(err) == f"levit-bench {argv[0]}: error: {message}"
    assert not work.exists()


# ---- issue 30: faults found by trying bad input ---------------------------------------------


def _never_measure(monkeypatch) -> None:
    """A run that got as far as measuring fails the test: its refusal must come first."""
    def measured(*args, **kwargs):
        raise AssertionError("measured before the store was checked")

    monkeypatch.setattr("levit_bench.runners.session.run_cell", measured)
    monkeypatch.setattr("levit_bench.runners.profile_run.profile_cell", measured)


_MEASURE = ["--runtime", "onnxruntime", "--platform", "xeon", "--model", "levit_128s", "--protocol", "smoke"]


@pytest.mark.parametrize("command", ["run", "profile"])
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_store_that_cannot_take_a_record_is_refused_before_measuring(workdir_with_artifact, capsys, monkeypatch,
                                                                        command, damage):
    path = workdir_with_artifact / "results.db"
    if damage == "garbage":
        path.write_bytes(os.urandom(64 * 1024))
    else:
        store = open_store(workdir_with_artifact)
        for _ in range(40):
            store.insert(_record(error="x" * 4000))
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    _never_measure(monkeypatch)
    code, err = _main(capsys, "--workdir", workdir_with_artifact, command, *_MEASURE)
    line = _one_line(err)
    assert code == 1 and str(path) in line
    assert "file is not a database" in line or "malformed" in line, line
    assert not list(workdir_with_artifact.glob("results.db.unsaved-*.json"))


def _disk_full(monkeypatch) -> None:
    """The store opens and checks fine, then refuses to write: a full disk, as SQLite says it."""
    from levit_bench import store

    def full(self, record, table="measurements"):
        raise store.StoreError(f"results store {self.path} cannot be used (database or disk is full)")

    monkeypatch.setattr(store.ResultsStore, "insert", full)


@pytest.mark.parametrize("command", ["run", "profile"])
def test_a_measurement_the_store_refuses_afterwards_is_kept_and_said_where(workdir_with_artifact, capsys,
                                                                          monkeypatch, command):
    _disk_full(monkeypatch)
    code, err = _main(capsys, "--workdir", workdir_with_artifact, command, *_MEASURE)
    line = _one_line(err)
    kept = list(workdir_with_artifact.glob("results.db.unsaved-*.json"))
    assert code == 1 and "database or disk is full" in line
    assert len(kept) == 1 and f"the record is kept in {kept[0]}" in line
    record = json.loads(kept[0].read_text())
    assert record["model"] == "levit_128s" and record["median_ms"] > 0


def test_a_kept_record_goes_to_the_temporary_directory_when_its_folder_is_full_too(workdir_with_artifact, capsys,
                                                                                   monkeypatch, tmp_path):
    from levit_bench.store import unsaved
    from levit_bench.workdir import write_atomic

    _disk_full(monkeypatch)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()

    def beside_fails(path, data):
        if path.parent == workdir_with_artifact:
            raise unsaved.LevitBenchError(f"cannot write {path}: No space left on device")
        write_atomic(path, data)

    monkeypatch.setattr(unsaved, "write_atomic", beside_fails)
    code, err = _main(capsys, "--workdir", workdir_with_artifact, "run", *_MEASURE)
    kept = list((tmp_path / "tmp").glob("results.db.unsaved-*.json"))
    assert code == 1 and len(kept) == 1 and f"the record is kept in {kept[0]}" in _one_line(err)
    assert json.loads(kept[0].read_text())["status"] == "ok"


def _weights(tmp_path, kind: str) -> str:
    if kind == "missing":
        return str(tmp_path / "nowhere.pth")
    if kind == "text":
        (tmp_path / "notes.pth").write_text("these are not weights\n")
        return str(tmp_path / "notes.pth")
    if kind == "pickle":
        torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _System("true")}, tmp_path / "evil.pth")
        return str(tmp_path / "evil.pth")
    return "hf-hub:facebook/levit-128S"  # offline, and not in this test's Hugging Face cache


@pytest.mark.parametrize("command", ["run", "sweep"])
@pytest.mark.parametrize("kind,message", [("missing", "nowhere.pth"), ("text", "not a PyTorch checkpoint"),
                                          ("pickle", "refusing to load"), ("hub", "Hugging Face cache")])
def test_weights_that_cannot_be_read_store_no_row(workdir_with_artifact, tmp_path, capsys, command, kind, message):
    models = "--models" if command == "sweep" else "--model"
    code, err = _main(capsys, "--workdir", workdir_with_artifact, command, "--runtimes" if command == "sweep"
                      else "--runtime", "onnxruntime", "--platform", "xeon", models, "levit_128s", "--protocol",
                      "smoke", "--weights", _weights(tmp_path, kind))
    assert code == 1 and message in _one_line(err)
    assert open_store(workdir_with_artifact).records() == []


@pytest.mark.parametrize("seconds", ["0", "-1", "nan", "inf"])
def test_a_cell_timeout_that_is_not_positive_is_refused(workdir_with_artifact, capsys, seconds):
    code, err = _main(capsys, "--workdir", workdir_with_artifact, "sweep", "--platform", "xeon", "--models",
                      "levit_128s", "--runtimes", "onnxruntime", "--cell-timeout", seconds)
    assert code == 2 and "--cell-timeout" in _one_line(err)
    assert not (workdir_with_artifact / "results.db").exists()


def _every_core():
    from levit_bench.runners import core_locks

    cpus = sorted(os.sched_getaffinity(0))
    return core_locks.reserve(cpus, len({core_locks.physical_core(cpu) for cpu in cpus}), wait_timeout_s=5)


def test_a_sweep_that_finds_no_free_core_stores_no_row(workdir_with_artifact, capsys):
    with _every_core():
        code, err = _main(capsys, "--workdir", workdir_with_artifact, "sweep", "--platform", "xeon", "--models",
                          "levit_128s", "--runtimes", "onnxruntime", "--rounds", "1", "--protocol", "smoke",
                          "--wait-timeout", "2")
    assert code == 1
    assert "levit_128s / onnxruntime not measured (nothing stored): no free core after waiting 2 s" in err
    assert open_store(workdir_with_artifact).records() == []


def test_a_killed_sweep_takes_its_cell_worker_and_its_core_with_it(workdir_with_artifact):
    from levit_bench.runners import core_locks

    sweep = subprocess.Popen(
        [sys.executable, "-m", "levit_bench", "--workdir", str(workdir_with_artifact), "sweep", "--platform", "xeon",
         "--models", "levit_128s", "--runtimes", "onnxruntime", "--rounds", "1", "--protocol", "paper"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300  # the host is calibrated first (this test's own cache)
    worker = None
    try:
        while worker is None or not list(core_locks.lock_dir().glob("*.lock")):
            assert sweep.poll() is None and time.monotonic() < deadline, "no cell started"
            workers = [c for c in psutil.Process(sweep.pid).children()
                       if "levit_bench.runners.worker" in " ".join(_cmdline(c))]
            worker = workers[0] if workers else None
            time.sleep(0.2)
        time.sleep(3)  # well inside the paper protocol's 70 s
        os.killpg(sweep.pid, signal.SIGKILL)
        sweep.wait(timeout=30)
        gone, alive = psutil.wait_procs([worker], timeout=15)
        assert not alive, "the cell's worker outlived its sweep"
        with _every_core():  # every core is free again at once (reserve waits at most 5 s)
            pass
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sweep.pid, signal.SIGKILL)
        if worker is not None and worker.is_running():
            worker.kill()


def test_merged_rows_a_reader_cannot_use_are_refused_all_or_nothing(tmp_path, capsys):
    other = tmp_path / "other.db"
    good = _record()
    bad = _record()
    del bad["median_ms"]
    ResultsStore(other).insert(good)
    ResultsStore(other).insert(bad)
    code, err = _main(capsys, "--workdir", tmp_path / "work", "results", "merge", other)
    assert code == 1 and "row 2 of measurements lacks median_ms; nothing merged" in _one_line(err)
    with sqlite3.connect(other) as db:
        db.execute("UPDATE measurements SET record_json = ? WHERE id = 2",
                   (json.dumps(_record(images_per_s="fast")),))
    code, err = _main(capsys, "--workdir", tmp_path / "work", "results", "merge", other)
    assert code == 1 and "has images_per_s 'fast', not a positive number" in _one_line(err)
    assert not (tmp_path / "work" / "results.db").exists()  # refused before this store was opened
    code, err = _main(capsys, "--workdir", tmp_path / "work", "results", "merge", tmp_path / "missing.db")
    assert code == 1 and "no results store at" in _one_line(err) and not (tmp_path / "work").exists()
    with sqlite3.connect(other) as db:  # a runtime that returned inf logits: stored failed, and merged
        db.execute("UPDATE measurements SET record_json = ? WHERE id = 2", (json.dumps(_record(
            status="failed", error="onnxruntime returned non-finite logits", images_per_s=None, median_ms=None,
            max_abs_diff=float("inf"))),))
    code, err = _main(capsys, "--workdir", tmp_path / "work", "results", "merge", other)
    assert code == 0 and "2 new rows" in err, err
    assert [r["status"] for r in open_store(tmp_path / "work").records()] == ["ok", "failed"]
    for command in (["results"], ["results", "--aggregate"], ["compare", "--by", "runtime", "onnxruntime",
                                                                "openvino"]):
        code, err = _main(capsys, "--workdir", tmp_path / "work", *command)
        assert "Error" not in err and "internal error" not in err


def test_a_merge_leaves_nothing_beside_the_other_store(tmp_path, capsys):
    other = tmp_path / "elsewhere" / "results.db"
    ResultsStore(other).insert(_record())
    before = sorted(p.name for p in other.parent.iterdir())
    code, err = _main(capsys, "--workdir", tmp_path / "work", "results", "merge", other)
    assert code == 0, err
    assert sorted(p.name for p in other.parent.iterdir()) == before == ["results.db"]
    assert len(open_store(tmp_path / "work").records()) == 1


@pytest.mark.parametrize("command", [["results"], ["results", "--aggregate"], ["results", "--json"],
                                     ["compare", "--by", "runtime", "torch", "onnxruntime"], ["report"]])
def test_reading_an_empty_work_directory_creates_no_store(tmp_path, capsys, command):
    work = tmp_path / "empty"
    work.mkdir()
    code, err = _main(capsys, "--workdir", work, *command)
    assert not (work / "results.db").exists()
    assert code in (0, 1) and "internal error" not in err
    if command[0] == "report":
        assert code == 1 and "holds no measurements" in _one_line(err)


def _wait_for_torch(process: subprocess.Popen, timeout_s: float = 60) -> None:
    """Until the process is importing torch (its shared library mapped): the moment a Ctrl-C once
    printed a traceback."""
    deadline = time.monotonic() + timeout_s
    maps = pathlib.Path(f"/proc/{process.pid}/maps")
    while "libtorch" not in maps.read_text():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)


@pytest.mark.parametrize("after_s", [0.0, 0.2])
def test_ctrl_c_while_the_command_starts_is_an_interrupt(after_s):
    process = subprocess.Popen([sys.executable, "-m", "levit_bench", "results"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    _wait_for_torch(process)
    time.sleep(after_s)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and _one_line(err).endswith("interrupted")
