"""--cores N|all, --streams S and your own platforms: N physical cores held exclusively, every
runtime given exactly their threads (checked against what it reports), S requests in flight,
platforms.toml listed and used, and a bad request refused in one line with nothing stored."""

import json
import os
import sqlite3
import statistics
import subprocess
import sys
import threading
import time

import pytest

from levit_bench import api, platforms
from levit_bench.errors import LevitBenchError
from levit_bench.store import COLUMNS, SCHEMA_VERSION, ResultsStore, open_store
from levit_bench.runners import core_locks
from levit_bench.runners.measure import PROTOCOLS, measure_streams, summarise
from cli_support import run_cli
from records import make_record
from test_user_onnx import _export

HOLDER = """
import sys, time
from levit_bench.runners import core_locks
from levit_bench.runners.measure import PROTOCOLS, measure_streams, summarise
with core_locks.reserve([int(sys.argv[1])], 1, wait_timeout_s=0) as cores:
    print("holding", cores[0], flush=True)
    time.sleep(600)
"""
CORES = core_locks.usable_physical_cores()  # 2 on the reference VM


@pytest.fixture(autouse=True)
def _no_user_platforms():
    """Platforms a test registers do not outlive it."""
    yield
    platforms._ADDED.clear()


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("cores") / "tiny_net.onnx")


def _hold_one_core():
    core = max(os.sched_getaffinity(0))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(core)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().split() == ["holding", str(core)]
    return holder, core


@pytest.mark.parametrize("cores", [str(CORES), "all"])
def test_a_request_for_every_core_waits_while_one_is_held_then_stores_nothing(workdir_with_artifact, cores):
    holder, core = _hold_one_core()
    try:
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "levit_bench", "--workdir", str(workdir_with_artifact), "run", "--runtime",
             "onnxruntime", "--platform", "xeon", "--model", "levit_128s", "--protocol", "smoke", "--cores", cores,
             "--wait-timeout", "2"], capture_output=True, text=True, timeout=300)
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    wanted = "a free core" if CORES == 1 else f"{CORES} free cores"
    assert run.returncode == 1
    assert f"waiting for {wanted} (cpu{core} held by pid {holder.pid}" in run.stderr
    assert run.stderr.splitlines()[-1].startswith(
        f"levit-bench run: error: no {wanted.removeprefix('a ')} after waiting 2 s (cpu{core} held by pid {holder.pid}")
    assert waited >= 2
    assert open_store(workdir_with_artifact).records() == []


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime", "openvino", "tvm"])
def test_each_runtime_runs_on_the_threads_of_the_cores_it_holds(runtime, workdir_with_artifact, tiny_onnx):
    """The record's threads are what the runtime reports (a mismatch fails the record), one per
    held core; the kernel's view of the process agrees: that many threads computed."""
    target = dict(model="levit_128s") if runtime == "torch" else dict(model=None, onnx=tiny_onnx, batch=64)
    (record,) = api.run(runtime=runtime, platform="xeon", cores="all", protocol="default",
                        workdir=workdir_with_artifact, **target)
    assert record["status"] == "ok", record["error"]
    assert (record["cores"], record["streams"], record["threads"]) == (CORES, 1, CORES)
    assert len(record["pinned_cores"]) == CORES
    assert record["busy_threads"] == CORES, record["cpu_parallelism"]


def test_a_runtime_that_reports_other_threads_than_it_was_given_is_stored_failed(workdir_with_artifact,
                                                                                 monkeypatch):
    from levit_bench.runners.onnxruntime_runner import OnnxRuntimeRunner

    monkeypatch.setattr(OnnxRuntimeRunner, "stream_threads", property(lambda self: self.platform.threads + 1))
    (record,) = api.run("levit_128s", "onnxruntime", "xeon", cores="all", protocol="smoke",
                        workdir=workdir_with_artifact)
    assert record["status"] == "failed"
    assert record["error"] == (f"onnxruntime reports {CORES + 1} threads, not the {CORES} it was given "
                               "(one per held core)")


@pytest.mark.parametrize("args, message", [
    (["--cores", "0"], "argument --cores: must be at least 1, not 0"),
    (["--cores", "some"], "argument --cores: 'some' is not an integer"),
    (["--cores", str(CORES + 1)], f"{CORES + 1} cores asked for (platform xeon), but this host has {CORES} "
                                  "physical core"),
    (["--streams", "0"], "argument --streams: must be at least 1, not 0"),
    (["--cores", "1", "--streams", "2"], "2 streams on 1 core: each stream runs on cores/streams cores"),
    (["--platform", "gpu", "--cores", "1"], "--cores applies to the CPU platforms, not gpu"),
])
def test_a_bad_cores_request_is_one_line_and_stores_nothing(args, message, capsys, tmp_path):
    work = tmp_path / "w"
    platform = [] if "--platform" in args else ["--platform", "xeon"]
    code, _, err = run_cli(capsys, "--workdir", work, "run", "--model", "levit_128s", "--runtime", "onnxruntime",
                           *platform, "--protocol", "smoke", *args)
    assert code in (1, 2)
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not (work / "results.db").exists()


def test_api_refuses_a_bad_cores_value(tmp_path):
    for cores, streams in ((0, None), (True, None), ("every", None), (1, 0)):
        with pytest.raises(LevitBenchError, match="--cores must be|--streams must be"):
            api.run("levit_128s", "onnxruntime", "xeon", cores=cores, streams=streams, workdir=tmp_path)
    assert not (tmp_path / "results.db").exists()


PLATFORMS_TOML = """
[platforms.edge]
base = "xeon"
cores = "all"
batch = 4
description = "every core of this box, batch 4"

[platforms.one]
base = "xeon"
precision = "fp32"
"""


def test_your_platforms_are_listed_and_used_by_run_and_by_a_sweeps_workers(workdir_with_artifact, capsys):
    (workdir_with_artifact / "platforms.toml").write_text(PLATFORMS_TOML)
    code, out, err = run_cli(capsys, "--workdir", workdir_with_artifact, "platforms", "--json")
    assert code == 0, err
    listed = {p["name"]: p for p in json.loads(out)}
    assert list(listed) == ["xeon", "arm", "gpu", "edge", "one"]
    assert listed["edge"] | {"source": None} == {
        "name": "edge", "description": "every core of this box, batch 4", "device": "cpu", "threads": "all",
        "default_batch": 4, "default_precision": "fp32", "base": "xeon", "streams": 1, "source": None,
        "scenario": None}
    assert listed["edge"]["source"] == str(workdir_with_artifact / "platforms.toml")
    code, out, _ = run_cli(capsys, "--workdir", workdir_with_artifact, "platforms")
    assert code == 0 and "every core of this box, batch 4" in out

    code, out, err = run_cli(capsys, "--workdir", workdir_with_artifact, "sweep", "--platform", "edge", "--models",
                             "levit_128s", "--runtimes", "onnxruntime", "--rounds", "1", "--protocol", "smoke",
                             "--json")
    assert code == 0, err
    (record,) = json.loads(out)  # measured in a worker process, which read the platform from its parent
    assert (record["platform"], record["batch"], record["cores"], record["threads"]) == ("edge", 4, CORES, CORES)
    assert record["platform_info"]["source"] == str(workdir_with_artifact / "platforms.toml")
    code, out, err = run_cli(capsys, "--workdir", workdir_with_artifact, "run", "--platform", "one", "--model",
                             "levit_128s", "--runtime", "onnxruntime", "--protocol", "smoke", "--json")
    assert code == 0, err
    assert json.loads(out)[0]["cores"] == 1


@pytest.mark.parametrize("text, message", [
    ("[platforms.a\nbase = 1", "not TOML"),
    ("[platforms.a]\nbase = \"xeon\"\ncolour = \"red\"", "platforms.a: unknown key 'colour'"),
    ("[platforms.a]\ncores = 2", "platforms.a needs base = one of xeon, arm, gpu"),
    ("[platforms.a]\nbase = \"xeon\"\ncores = 0", "platforms.a.cores must be a positive integer or \"all\", not 0"),
    ("[platforms.a]\nbase = \"xeon\"\nprecision = \"fp64\"", "platforms.a.precision must be one of"),
    ("[platforms.a]\nbase = \"gpu\"\ncores = 2", "platforms.a.cores: cores apply to the CPU platforms, not gpu"),
    ("[platforms.xeon]\nbase = \"xeon\"", "xeon is a built-in platform; give yours another name"),
    ("[boxes.a]\nbase = \"xeon\"", "unknown key 'boxes' (platforms are tables [platforms.NAME])"),
    ("[platforms.a]\nbase = \"xeon\"\nscenario = \"batch\"", "platforms.a.scenario: unknown scenario 'batch'"),
    ("[platforms.a]\nbase = \"xeon\"\nscenario = { name = \"server\" }",
     "platforms.a.scenario: the server scenario needs --target-qps"),
    ("[platforms.a]\nbase = \"xeon\"\nscenario = { name = \"offline\", qps = 3 }",
     "platforms.a.scenario: unknown key 'qps'"),
])
def test_a_bad_platforms_file_is_one_line_naming_it_and_stores_nothing(text, message, capsys, tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(text)
    work = tmp_path / "w"
    for command in (["platforms"], ["run", "--model", "levit_128s", "--runtime", "onnxruntime", "--platform",
                                    "xeon", "--protocol", "smoke"]):
        code, _, err = run_cli(capsys, "--workdir", work, "--platforms", path, *command)
        assert code == 1
        assert len(err.strip().splitlines()) == 1 and str(path) in err and message in err, err
    assert not (work / "results.db").exists()
    code, _, err = run_cli(capsys, "--workdir", work, "--platforms", tmp_path / "absent.toml", "platforms")
    assert code == 1 and err.strip() == f"levit-bench platforms: error: no platforms file {tmp_path / 'absent.toml'}"


def test_a_store_of_schema_1_is_upgraded_in_place_and_merges(tmp_path):
    """Rows from before --cores read as what they ran on: one core on xeon and arm, one stream."""
    old = tmp_path / "old" / "results.db"
    open_store(old.parent).insert(make_record())
    db = sqlite3.connect(old)
    for column in ("cores", "streams"):
        db.execute(f"ALTER TABLE measurements DROP COLUMN {column}")
    legacy = {k: v for k, v in make_record(uid="legacy").items() if k not in ("cores", "streams")}
    db.execute("DELETE FROM measurements")
    columns = [c for c in COLUMNS if c not in ("cores", "streams")]
    db.execute(f"INSERT INTO measurements ({', '.join(columns)}, record_json) VALUES "
               f"({', '.join('?' * (len(columns) + 1))})", [*(legacy.get(c) for c in columns), json.dumps(legacy)])
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.commit()
    db.close()

    here = open_store(tmp_path / "here")
    assert here.merge(old) == (1, 0)  # read as it is: the old store is not written
    assert sqlite3.connect(old).execute("SELECT value FROM meta").fetchone() == ("1",)
    key = {k: legacy.get(k) for k in ("model", "runtime", "runtime_version", "mode", "platform", "precision",
                                      "batch", "host", "artifact_sha256", "protocol")}
    assert here.count_ok({**key, "cores": 1, "streams": 1}) == 1

    upgraded = ResultsStore(old)  # opened to write: upgraded in place
    assert sqlite3.connect(old).execute("SELECT value FROM meta").fetchone() == (str(SCHEMA_VERSION),)
    assert sqlite3.connect(old).execute("SELECT cores, streams FROM measurements").fetchall() == [(1, 1)]
    assert upgraded.count_ok({**key, "cores": 1, "streams": 1}) == 1
    assert upgraded.records()[0]["cores"] == 1


class CountingRunner:
    """Stands in for a runtime's streams: each call sleeps, counting the calls in flight."""

    def __init__(self, fail_at: int | None = None):
        self.in_flight = self.most = self.calls = 0
        self.fail_at = fail_at
        self.lock = threading.Lock()

    def __call__(self):
        with self.lock:
            self.calls += 1
            if self.calls == self.fail_at:
                raise RuntimeError("the runtime broke")
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        time.sleep(0.01)
        with self.lock:
            self.in_flight -= 1


@pytest.mark.parametrize("streams", [1, 2, 4])
def test_s_streams_put_s_requests_in_flight_and_images_per_s_is_their_total(streams):
    counting = CountingRunner()
    timings = measure_streams([counting] * streams, PROTOCOLS["default"])
    assert counting.most == streams
    assert timings.streams == streams and timings.wall_s >= PROTOCOLS["default"].min_s
    assert len(timings.samples_s) >= PROTOCOLS["default"].min_calls
    stats = summarise(timings.samples_s, 8, timings.wall_s)
    assert stats["images_per_s"] == pytest.approx(8 * len(timings.samples_s) / timings.wall_s)
    # every stream was busy all along (its latencies add up to the wall time): streams x one's rate
    assert stats["images_per_s"] == pytest.approx(streams * 8 / statistics.fmean(timings.samples_s), rel=0.1)


def test_a_stream_whose_runtime_fails_stops_them_all_and_raises():
    failing = CountingRunner(fail_at=20)
    with pytest.raises(RuntimeError, match="the runtime broke"):
        measure_streams([failing, failing], PROTOCOLS["default"])
    assert failing.in_flight == 0


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime", "openvino", "tvm"])
def test_each_runtime_runs_one_stream_per_core(runtime, workdir_with_artifact, tiny_onnx):
    """Streams on every held core: the threads each reports add up to the cores, as many
    computed, and images/s is every request's images over the wall time."""
    target = dict(model="levit_128s") if runtime == "torch" else dict(model=None, onnx=tiny_onnx, batch=64)
    (record,) = api.run(runtime=runtime, platform="xeon", cores="all", streams=CORES, protocol="default",
                        workdir=workdir_with_artifact, **target)
    assert record["status"] == "ok", record["error"]
    assert (record["cores"], record["streams"], record["threads"]) == (CORES, CORES, CORES)
    assert record["busy_threads"] == CORES, record["cpu_parallelism"]
    assert record["images_per_s"] == pytest.approx(record["batch"] * record["n_samples"] / record["wall_s"], rel=1e-3)


def test_a_runtime_without_streams_refuses_them_in_one_line():
    from levit_bench.platforms import get_platform
    from levit_bench.runners.base import Runner, RunnerError, RunnerOptions

    class OneStream(Runner):
        runtime = "one-stream"
        load = __call__ = describe = lambda self, *args: None

    with pytest.raises(RunnerError, match="one-stream runs one stream at a time, not --streams 2"):
        OneStream(get_platform("xeon"), RunnerOptions(streams=2))


def test_profile_times_one_stream(workdir_with_artifact, capsys):
    code, _, err = run_cli(capsys, "--workdir", workdir_with_artifact, "profile", "--model", "levit_128s",
                           "--runtime", "onnxruntime", "--platform", "xeon", "--cores", "all", "--streams", CORES,
                           "--protocol", "smoke")
    if CORES == 1:
        assert code == 0, err
    else:
        assert code == 1 and err.strip() == (f"levit-bench profile: error: profile times one stream's kernels, "
                                             f"not {CORES} (--streams 1)")
