"""MLPerf LoadGen scenarios: the harness (levit_bench/scenarios/) on a system under test of known
service time, its verdict and percentiles read from LoadGen's own summary, every answer kept;
then `run --scenario` on real runtimes, stored with its verdict, gated, and bad requests refused."""

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from levit_bench import api
from levit_bench.errors import LevitBenchError
from levit_bench.store import open_store
from levit_bench.scenarios.loadgen import run_scenario
from levit_bench.scenarios.settings import ScenarioError, ScenarioSettings
from cli_support import run_cli

SERVICE_S = 0.01  # the fake runtime's time per batch, whatever its size
IMAGES = np.arange(32 * 3, dtype=np.float32).reshape(32, 3)  # the QSL: 32 "images" of 3 values


class FakeStream:
    """A stream of known service time: each call sleeps SERVICE_S and answers each row's sum."""

    def __init__(self, fail_after: int | None = None):
        self.shapes, self.fail_after, self.lock = set(), fail_after, threading.Lock()
        self.calls = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self.lock:
            self.calls += 1
            self.shapes.add(batch.shape)
            if self.fail_after is not None and self.calls > self.fail_after:
                raise RuntimeError("the runtime broke")
        time.sleep(SERVICE_S)
        return batch.sum(axis=1, keepdims=True)


def _run(scenario: str, streams: int = 1, batch: int = 4, **settings):
    calls = [FakeStream() for _ in range(streams)]
    result = run_scenario(calls, IMAGES, batch, ScenarioSettings(scenario, min_duration_s=1, min_queries=10,
                                                                 **settings))
    for call in calls:
        assert call.shapes <= {(batch, 3)}  # a partial batch is padded to the loaded one
    assert result.outputs and all(np.allclose(row, IMAGES[i].sum()) for i, row in result.outputs.items())
    assert result.log_dir.joinpath("mlperf_log_summary.txt").is_file()
    assert result.log_dir.joinpath("mlperf_log_detail.txt").is_file()
    return result.summary


def test_offline_batches_what_is_queued_on_every_stream():
    summary = _run("offline", streams=2, target_qps=800)
    assert summary["scenario"] == "Offline" and summary["valid"] and summary["failed"] == []
    assert summary["samples_per_s"] == pytest.approx(2 * 4 / SERVICE_S, rel=0.2)  # two streams of 4 per 10 ms
    assert set(summary["latency_ms"]) == {"p50", "p90", "p95", "p97", "p99", "p99.9"}


def test_a_batch_of_the_whole_qsl_is_the_qsl_itself_not_a_copy():
    """Offline issues the QSL as one shuffled order repeated: a batch of all of it, sorted, is the
    QSL (a copy of 9.6 MB per batch at batch 16 cost ~1.5% of OpenVINO's images/s); its outputs
    still answer the images LoadGen asked for."""
    qsl, viewed = IMAGES[:4].copy(), []

    def call(batch: np.ndarray) -> np.ndarray:
        viewed.append(np.shares_memory(batch, qsl))
        return batch.sum(axis=1, keepdims=True)

    result = run_scenario([call], qsl, 4, ScenarioSettings("offline", target_qps=2000, min_duration_s=0.2,
                                                           min_queries=10))
    assert viewed and all(viewed)
    assert all(np.allclose(row, qsl[i].sum()) for i, row in result.outputs.items()) and len(result.outputs) == 4


def test_single_stream_answers_one_image_at_a_time_in_the_service_time():
    summary = _run("single-stream")
    assert summary["valid"], summary["failed"]
    assert SERVICE_S * 1e3 <= summary["latency_ms"]["p50"] < SERVICE_S * 1e3 + 3
    assert summary["metric_ms"]["p90"] >= summary["latency_ms"]["p50"]
    assert "p90" in summary["early_stopping_ms"]


def test_multi_stream_splits_a_query_into_batches():
    summary = _run("multi-stream", samples_per_query=8)  # two batches of 4 on one stream: 20 ms a query
    assert 2 * SERVICE_S * 1e3 <= summary["latency_ms"]["p50"] < 2 * SERVICE_S * 1e3 + 5
    assert summary["samples_per_s"] == pytest.approx(8 / (2 * SERVICE_S), rel=0.2)
    assert "p99" in summary["metric_ms"]


def test_a_server_bound_no_query_can_meet_is_invalid_naming_the_constraint():
    summary = _run("server", target_qps=50, latency_bound_ms=1)
    assert summary["scenario"] == "Server" and not summary["valid"]
    assert "Performance constraints satisfied" in summary["failed"]
    assert summary["latency_ms"]["p99"] > 1


def test_a_stream_that_fails_is_raised_once_loadgen_ends():
    with pytest.raises(RuntimeError, match="the runtime broke"):
        run_scenario([FakeStream(fail_after=3)], IMAGES, 4, ScenarioSettings("offline", target_qps=400,
                                                                            min_duration_s=1, min_queries=10))


@pytest.mark.parametrize("settings, message", [
    (dict(scenario="batch"), "unknown scenario 'batch'; the scenarios are single-stream, multi-stream, server, offline"),
    (dict(scenario="server", target_qps=-1), "--target-qps must be a positive number of queries per second, not -1"),
    (dict(scenario="server"), "the server scenario needs --target-qps"),
    (dict(scenario="offline", latency_bound_ms=0), "--latency-bound-ms must be a positive number, not 0"),
    (dict(scenario="multi-stream", samples_per_query=0), "--samples-per-query must be a positive integer, not 0"),
    (dict(scenario="offline", min_queries=True), "--min-queries must be a positive integer, not True"),
    (dict(scenario="server", target_qps=10, max_wait_ms=float("nan")), "--max-wait-ms must be a number >= 0"),
])
def test_settings_a_scenario_cannot_run_are_one_line(settings, message):
    with pytest.raises(ScenarioError, match="^" + message.replace("(", r"\(").replace("-", r"\-")):
        ScenarioSettings(**settings)


def test_a_missing_loadgen_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlperf_loadgen", None)  # as if it were not installed
    with pytest.raises(ScenarioError, match=r"scenarios run under MLPerf LoadGen, which is not installed "
                                            r"\(pip install 'levit-bench\[scenarios\]'\)"):
        run_scenario([FakeStream()], IMAGES, 4, ScenarioSettings("offline", target_qps=100))


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("scenario, options", [
    ("single-stream", dict(batch=1)), ("multi-stream", dict(samples_per_query=4, batch=4)),
    ("server", dict(target_qps=20, batch=2)), ("offline", dict())])
def test_each_scenario_stores_its_verdict_percentiles_and_logs(workdir_with_artifact, runtime, scenario, options):
    (record,) = api.run("levit_128s", runtime, "xeon", scenario=scenario, min_duration=2, min_queries=10,
                        workdir=workdir_with_artifact, **options)
    assert record["status"] == "ok", record["error"]
    assert record["scenario"] == scenario and isinstance(record["valid"], bool)
    assert json.loads(record["scenario_settings"])["min_duration_s"] == 2
    assert set(record["latency_ms"]) == {"p50", "p90", "p95", "p97", "p99", "p99.9"}
    assert record["median_ms"] == record["latency_ms"]["p50"] > 0 and record["images_per_s"] > 0
    assert record["valid"] == (record["failed_constraints"] == [])
    assert "LoadGen" not in (record.get("error") or "")
    assert Path(record["loadgen_logs"]["summary"]).is_file() and Path(record["loadgen_logs"]["detail"]).is_file()
    # the trust gate read what LoadGen's queries produced, for every QSL image they asked for
    assert record["parity_images"] >= 1 and record["top1_agreement"] == 1.0
    stored = open_store(workdir_with_artifact).records()
    assert [r["uid"] for r in stored] == [record["uid"]]


def test_an_impossible_server_bound_is_stored_invalid_and_shown(workdir_with_artifact, capsys):
    code, out, err = run_cli(capsys, "--workdir", workdir_with_artifact, "run", "--model", "levit_128s", "--runtime",
                             "onnxruntime", "--platform", "xeon", "--scenario", "server", "--target-qps", "20",
                             "--latency-bound-ms", "0.1", "--batch", "2", "--min-duration", "2", "--min-queries", "10")
    assert code == 0, err
    (record,) = open_store(workdir_with_artifact).records()
    assert record["status"] == "ok" and record["valid"] is False
    assert "Performance constraints satisfied" in record["failed_constraints"]
    assert "INVALID (Performance constraints satisfied" in _flat(out)
    code, out, _ = run_cli(capsys, "--workdir", workdir_with_artifact, "results", "--wide")
    assert code == 0 and "INVALID" in out and "server" in out


@pytest.mark.parametrize("args, message", [
    (["--scenario", "server", "--target-qps", "-1"], "--target-qps must be a positive number of queries per second"),
    (["--scenario", "batch"], "argument --scenario: invalid choice: 'batch'"),
    (["--scenario", "server"], "the server scenario needs --target-qps"),
    (["--target-qps", "5"], "--target-qps go with --scenario"),
    (["--scenario", "offline", "--rounds", "3", "--target", "0.02"], "--target repeats the closed-loop protocol"),
    (["--scenario", "offline", "--latency-bound-ms", "5"], "--latency-bound-ms: not a setting of the offline scenario"),
    (["--scenario", "offline", "--runtime", "tvm", "--rpc", "127.0.0.1:9"], None),
])
def test_a_bad_scenario_request_is_one_line_and_stores_nothing(args, message, tmp_path, capsys):
    work = tmp_path / "w"
    runtime = [] if "--runtime" in args else ["--runtime", "onnxruntime"]
    platform = ["--platform", "arm"] if "--rpc" in args else ["--platform", "xeon"]
    code, _, err = run_cli(capsys, "--workdir", work, "run", "--model", "levit_128s", *runtime, *platform,
                           *args)
    assert code in (1, 2)
    assert len(err.strip().splitlines()) == 1, err
    assert message is None or message in err, err
    assert not (work / "results.db").exists()


def test_scenario_with_an_rpc_device_is_refused():
    from levit_bench.runners.session import RunRequest, checked_runner

    request = RunRequest("levit_128s", "tvm", "arm", runtime_options={"rpc": "emulator"},
                         scenario=ScenarioSettings("offline").as_dict())
    with pytest.raises(LevitBenchError, match="--scenario runs on this host's runtimes; a device behind --rpc"):
        checked_runner(request, Path("."))


def test_a_missing_loadgen_refuses_the_run_before_measuring(workdir_with_artifact, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlperf_loadgen", None)
    code, _, err = run_cli(capsys, "--workdir", workdir_with_artifact, "run", "--model", "levit_128s", "--runtime",
                           "onnxruntime", "--platform", "xeon", "--scenario", "offline")
    assert code == 1 and "scenarios run under MLPerf LoadGen, which is not installed" in err
    assert open_store(workdir_with_artifact).records() == []


def _flat(text: str) -> str:
    """A table's text with its cell borders and line wrapping undone."""
    return " ".join(part.strip(" │┃") for part in text.splitlines() if part.strip(" │┃"))


def test_a_scenarios_spread_of_latencies_is_not_instability():
    from levit_bench.records import stability_flags
    from records import make_record

    assert stability_flags([make_record(cv=0.5, scenario="server")]) == []
    assert stability_flags([make_record(cv=0.5)]) == ["round 1: CV 50% > 10%"]


SERVING_TOML = """
[platforms.serving]
base = "xeon"
batch = 1
scenario = { name = "single-stream", min_duration = 1, min_queries = 10 }
"""


def test_a_platforms_scenario_is_listed_and_swept_round_by_round_in_workers(workdir_with_artifact, capsys):
    (workdir_with_artifact / "platforms.toml").write_text(SERVING_TOML)
    code, out, err = run_cli(capsys, "--workdir", workdir_with_artifact, "platforms", "--json")
    assert code == 0, err
    listed = {p["name"]: p for p in json.loads(out)}
    assert json.loads(listed["serving"]["scenario"]) == {"scenario": "single-stream", "min_duration": 1,
                                                         "min_queries": 10}
    sweep = ["--workdir", workdir_with_artifact, "sweep", "--platform", "serving", "--models", "levit_128s",
             "--runtimes", "onnxruntime", "--rounds", "2", "--protocol", "smoke"]
    code, out, err = run_cli(capsys, *sweep, "--json")
    assert code == 0, err
    records = json.loads(out)  # each round in a worker process, driven by the scenario the parent named
    assert [r["round"] for r in records] == [1, 2]
    for record in records:
        assert record["status"] == "ok", record["error"]
        assert (record["scenario"], record["batch"]) == ("single-stream", 1)
        assert json.loads(record["scenario_settings"]) == {"min_duration_s": 1, "min_queries": 10}
        assert isinstance(record["valid"], bool) and Path(record["loadgen_logs"]["summary"]).is_file()
    code, _, err = run_cli(capsys, *sweep)  # both rounds stored: resumed, nothing measured again
    assert code == 0 and "2 cell-rounds already measured, skipped" in err
    code, out, err = run_cli(capsys, "--workdir", workdir_with_artifact, "results", "--aggregate", "--json")
    (cell,) = json.loads(out)
    # the cell's rate is LoadGen's samples/s, over its two rounds
    rates = sorted(r["images_per_s"] for r in records)
    assert rates[0] * 0.999 <= cell["images_per_s"] <= rates[1] * 1.001
