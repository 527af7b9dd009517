"""The LoadGen harness (levit_bench/scenarios/): each scenario on a system under test of known
service time, its verdict and percentiles read from LoadGen's own summary, every answer kept."""

import sys
import threading
import time

import numpy as np
import pytest

from levit_bench.scenarios.loadgen import run_scenario
from levit_bench.scenarios.settings import ScenarioError, ScenarioSettings

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
