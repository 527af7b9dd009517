"""`levit-bench capacity`: the highest server rate LoadGen finds VALID under a latency bound,
searched from the offline throughput on a runtime of known service time, every run stored;
then the search's own rules on a verdict known for every rate, and bad requests refused."""

import json
import time

import pytest

from levit_bench import api, runtimes
from levit_bench.store import open_store
from levit_bench.runners.onnxruntime_runner import OnnxRuntimeRunner
from levit_bench.scenarios.capacity import MOST_PROBES, RERUNS, Probe, find_capacity, search
from cli_support import run_cli
from test_user_onnx import _export

SERVICE_S = 0.04  # the paced runtime's time per call, whatever its batch
BATCH = 32
BOUND_MS = 3 * SERVICE_S * 1e3  # a sample waits for the call in flight, then its own: 2 x the service time


class PacedRunner(OnnxRuntimeRunner):
    """ONNX Runtime on a tiny net, each call taking SERVICE_S in all: a server of known capacity,
    BATCH / SERVICE_S samples/s, whose outputs are still the model's (the trust gate holds)."""

    runtime = "paced"

    def __call__(self, inputs):
        started = time.perf_counter()
        outputs = super().__call__(inputs)
        time.sleep(max(0.0, started + SERVICE_S - time.perf_counter()))
        return outputs

    def stream_calls(self) -> list:
        return [self]  # one stream: a session, paced


@pytest.fixture()
def paced_runtime():
    spec = runtimes.register_runtime(runtimes.RuntimeSpec("paced", f"{__name__}:PacedRunner", package="onnxruntime"))
    yield spec
    runtimes.unregister_runtime(spec.name)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("capacity") / "tiny_net.onnx")


def test_capacity_finds_the_rate_of_a_runtime_of_known_service_time(paced_runtime, tiny_onnx, tmp_path):
    known = BATCH / SERVICE_S  # 800 samples/s
    record = api.capacity(None, "paced", "xeon", onnx=tiny_onnx, batch=BATCH, latency_bound_ms=BOUND_MS,
                          min_duration=3, min_queries=100, workdir=tmp_path)
    assert record["status"] == "ok", record["error"]
    assert record["capacity_qps"] == pytest.approx(known, rel=0.05)
    assert record["lowest_invalid_qps"] - record["capacity_qps"] <= 0.02 * record["capacity_qps"]
    assert record["offline_qps"] == pytest.approx(known, rel=0.1)
    store = open_store(tmp_path)
    (stored,) = store.capacity_records()
    assert stored == record
    runs = {r["uid"]: r for r in store.records()}
    # every probe stored, with the runs of a rate early stopping could not judge and that ran again
    stored_uids = {uid for p in record["probes"] for uid in (p["uid"], *p["earlier_uids"])}
    assert set(runs) == {record["offline_uid"], *stored_uids}
    for probe in record["probes"]:
        assert all(runs[uid]["scenario"] == "server" and not runs[uid]["valid"] for uid in probe["earlier_uids"])
    assert runs[record["offline_uid"]]["scenario"] == "offline"
    for probe in record["probes"]:
        run = runs[probe["uid"]]
        assert run["status"] == "ok" and run["scenario"] == "server" and run["valid"] == probe["valid"]
        assert run["scenario_settings"].count(f'"target_qps": {probe["target_qps"]}')
        # VALID exactly where LoadGen's p99 met the bound
        assert probe["valid"] == (run["latency_ms"]["p99"] <= BOUND_MS), run["failed_constraints"]
    assert max(p["target_qps"] for p in record["probes"] if p["valid"]) == record["capacity_qps"]


def _verdicts(capacity: float):
    tried = []

    def probe(rate: float) -> Probe:
        tried.append(rate)
        return Probe(rate, rate <= capacity)

    return probe, tried


@pytest.mark.parametrize("capacity", [30.0, 97.0, 104.0, 6.0])
def test_the_search_brackets_then_bisects_to_two_percent(capacity):
    probe, tried = _verdicts(capacity)
    found = search(probe, ceiling_qps=100.0)
    assert tried[0] == 100.0 and len(tried) <= MOST_PROBES
    assert found.capacity_qps <= capacity < found.lowest_invalid_qps <= 1.02 * found.capacity_qps


def test_a_search_with_no_valid_rate_ends_without_one():
    probe, tried = _verdicts(0.1)
    found = search(probe, ceiling_qps=100.0)
    assert found.capacity_qps is None and min(tried) <= 5.0 and len(tried) <= 10


def _fake_runs(capacity: float, judged_after: int, late_on_rerun: int):
    """`measure` for find_capacity: offline at 100 images/s; above `capacity` a server run is
    INVALID on its p99; at or below it, VALID once it has enough queries, before that INVALID for
    early stopping alone, saying the queries it would need (as LoadGen does: enough if every
    further one is on time). A rerun meets one more late query: it needs `late_on_rerun` more."""
    runs, tries = [], {}

    def measure(scenario: dict) -> dict:
        runs.append(scenario)
        uid = f"run-{len(runs)}"
        if scenario["scenario"] == "offline":
            return {"status": "ok", "uid": uid, "images_per_s": 100.0}
        queries, rate = scenario["min_queries"], scenario["target_qps"]
        run = {"status": "ok", "uid": uid, "n_samples": queries, "p99_ms": 1.0}
        if rate > capacity:
            return {**run, "valid": False, "failed_constraints": ["Performance constraints satisfied"],
                    "queries_needed": None, "p99_ms": 99.0}
        tries[rate] = tries.get(rate, 0) + 1
        enough = judged_after + (late_on_rerun if tries[rate] > 1 else 0)
        if queries < enough:
            return {**run, "valid": False, "failed_constraints": ["Early stopping satisfied"],
                    "queries_needed": enough - queries}
        return {**run, "valid": True, "failed_constraints": [], "queries_needed": None}

    return measure, runs


def test_a_rate_early_stopping_cannot_judge_runs_again_with_the_queries_loadgen_asks_for():
    measure, runs = _fake_runs(capacity=40.0, judged_after=700, late_on_rerun=200)
    settings = {"latency_bound_ms": 30.0, "min_duration_s": 1.0, "min_queries": 100, "max_wait_ms": 2.0}
    found = find_capacity(measure, settings)
    assert found["status"] == "ok" and 40.0 / 1.02 <= found["capacity_qps"] <= 40.0
    valid = next(p["target_qps"] for p in found["probes"] if p["valid"])
    queries = [r["min_queries"] for r in runs if r.get("target_qps") == valid]
    assert queries[0] == 100 and queries == sorted(queries) and 3 <= len(queries) <= 1 + RERUNS
    assert sum(1 for p in found["probes"] if p["valid"]) >= 1 and len(found["probes"]) <= MOST_PROBES
    probe = next(p for p in found["probes"] if p["target_qps"] == valid)
    assert len(probe["earlier_uids"]) == len(queries) - 1 and probe["uid"] not in probe["earlier_uids"]


@pytest.mark.parametrize("args, message", [
    (["--latency-bound-ms", "0"], "--latency-bound-ms must be a positive number, not 0.0"),
    (["--min-duration", "-1"], "--min-duration must be a positive number, not -1.0"),
    (["--tolerance", "0.7"], "--tolerance must be between 0 and 0.5 (0.02 is ±2%), not 0.7"),
    (["--cores", "0"], "argument --cores: must be at least 1, not 0 (see levit-bench capacity --help)"),
    (["--streams", "0"], "argument --streams: must be at least 1, not 0 (see levit-bench capacity --help)"),
    (["--cores", "4096"], "4096 cores asked for (platform xeon), but this host has"),
])
def test_a_bad_capacity_request_is_one_line_and_stores_nothing(args, message, tmp_path, capsys):
    code, out, err = run_cli(capsys, "--workdir", tmp_path, "capacity", "--model", "levit_128s", "--runtime",
                             "onnxruntime", "--platform", "xeon", *args)
    assert code in (1, 2)
    (line,) = err.strip().splitlines()
    assert line.startswith(f"levit-bench capacity: error: {message}")
    assert not (tmp_path / "results.db").exists()


def test_a_capacity_sweep_searches_in_workers_and_the_report_shows_it(paced_runtime, tiny_onnx, tmp_path, capsys):
    known = BATCH / SERVICE_S
    code, out, err = run_cli(capsys, "--workdir", tmp_path, "sweep", "--platform", "xeon", "--onnx", tiny_onnx,
                             "--batch", BATCH, "--runtimes", "paced", "--capacity", "--latency-bound-ms", BOUND_MS,
                             "--min-duration", "2", "--rounds", "1", "--protocol", "smoke", "--json")
    assert code == 0, err
    found = json.loads(out)
    (search,) = found["capacities"]  # every run in a worker process, which knew `paced` from this one
    assert search["status"] == "ok" and search["round"] == 1
    assert search["capacity_qps"] == pytest.approx(known, rel=0.08)  # 2 s runs: a looser bracket than 3 s
    named = {search["offline_uid"], *(p["uid"] for p in search["probes"]),
             *(uid for p in search["probes"] for uid in p["earlier_uids"])}  # a probe's reruns too
    assert {r["uid"] for r in found["runs"]} == named
    code, out, err = run_cli(capsys, "--workdir", tmp_path, "results", "--capacity", "--wide")
    assert code == 0, err
    assert f"{search['capacity_qps']:.4g}" in out and "paced" in out
    page = api.report(tmp_path / "report", workdir=tmp_path).read_text()
    assert f"{search['capacity_qps']:.1f} within {BOUND_MS:g} ms" in page


@pytest.mark.parametrize("args, message", [
    (["--capacity", "--scenario", "offline"], "--capacity runs the offline and server scenarios itself"),
    (["--capacity", "--target-qps", "5"], "--capacity runs the offline and server scenarios itself"),
    (["--capacity", "--rounds", "3", "--target", "0.05"], "--target and --profile do not go with it"),
    (["--scenario", "offline", "--profile"], "--target and --profile repeat the closed-loop protocol"),
])
def test_a_bad_scenario_sweep_is_one_line_and_stores_nothing(args, message, tmp_path, capsys):
    code, _, err = run_cli(capsys, "--workdir", tmp_path, "sweep", "--platform", "xeon", "--models", "levit_128s",
                           "--runtimes", "onnxruntime", *args)
    assert code == 1
    (line,) = err.strip().splitlines()
    assert message in line
    assert not (tmp_path / "results.db").exists()
