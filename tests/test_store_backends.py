"""The store on both databases it takes: an SQLite file and a real PostgreSQL server, started for
this module (a unix socket in /tmp, no TCP port). Round trip, idempotent writes, concurrent
writers, merges between the two, and the one-line refusals."""

import json
import multiprocessing
import uuid

import pytest

from levit_bench.store import ResultsStore, StoreError
from levit_bench.store.schema import RESUME_KEY
from cli_support import run_cli
from postgres_server import new_database, running_postgres
from records import make_record


@pytest.fixture(scope="module")
def postgres():
    with running_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'results.db'}"
    return new_database(request.getfixturevalue("postgres"), f"t_{uuid.uuid4().hex[:12]}")


def _accuracy(**overrides) -> dict:
    return {"uid": uuid.uuid4().hex, "created_at": "2026-12-06T10:00:00+00:00", "model": "levit_128s",
            "weights_id": "w" * 16, "runtime": "torch", "precision": "fp32", "dataset": "val", "top1": 71.5,
            "top5": 90.1, "images": 100, "host": "abc123def456", **overrides}


def _profile(**overrides) -> dict:
    return {"uid": uuid.uuid4().hex, "created_at": "2026-12-06T10:00:00+00:00", "model": "levit_128s",
            "runtime": "onnxruntime", "mode": None, "platform": "xeon", "precision": "fp32", "batch": 16,
            "host": "abc123def456", "total_ms": 120.0, "median_ms": 118.0, "kernels_ms": 110.0,
            "components": [{"name": "mlp", "ms": 60.0}, {"name": "other", "ms": 50.0}], **overrides}


def _capacity(**overrides) -> dict:
    return {"uid": uuid.uuid4().hex, "run_id": "r1", "created_at": "2026-12-06T10:00:00+00:00",
            "model": "levit_128s", "runtime": "onnxruntime", "platform": "xeon", "batch": 1, "cores": 1,
            "streams": 1, "host": "abc123def456", "latency_bound_ms": 15.0, "status": "ok", "capacity_qps": 80.5,
            "offline_qps": 90.0, "probes": [], **overrides}


def _fill(store: ResultsStore) -> None:
    store.insert(make_record())
    store.insert(make_record(runtime="openvino", created_at="2026-11-21T10:00:01+00:00"))
    # a failed row keeps an infinite max_abs_diff: the logits it refused
    store.insert(make_record(status="failed", error="outputs differ", images_per_s=None, median_ms=None,
                             max_abs_diff=float("inf"), created_at="2026-11-21T10:00:02+00:00"))
    store.insert_accuracy(_accuracy())
    store.insert_profile(_profile())
    store.insert(_capacity(), table="capacities")


def _everything(store: ResultsStore) -> dict:
    return {"measurements": store.records(), "accuracy": store.accuracy_records(),
            "profiles": store.profile_records(), "capacities": store.capacity_records()}


def test_round_trip_filters_and_cells(store_url):
    store = ResultsStore(store_url)
    _fill(store)
    rows = store.records()
    assert [r["runtime"] for r in rows] == ["onnxruntime", "openvino", "onnxruntime"]  # oldest first
    assert rows[2]["max_abs_diff"] == float("inf") and rows[0]["samples_ms"] == [160.0, 161.0, 159.0]
    assert [r["runtime"] for r in store.records(status="ok", runtime="openvino")] == ["openvino"]
    assert store.accuracy_records("levit_128s")[0]["top1"] == 71.5 and store.accuracy_records("levit_192") == []
    assert store.profile_records()[0]["components"][0] == {"name": "mlp", "ms": 60.0}
    assert store.capacity_records()[0]["capacity_qps"] == 80.5
    key = {k: rows[0].get(k) for k in RESUME_KEY}
    assert store.count_ok(key) == 1 and store.ok_records(key)[0]["uid"] == rows[0]["uid"]
    assert store.count_ok({**key, "batch": None}) == 1  # a GPU cell's batch is searched: any batch matches
    with pytest.raises(StoreError, match="cannot filter on colour"):
        store.records(colour="red")


def test_a_record_stored_twice_is_one_row(store_url):
    store = ResultsStore(store_url)
    record = make_record()
    assert store.insert(record) is True
    assert store.insert(record) is False and store.insert({**record, "images_per_s": 1.0}) is False
    assert [r["images_per_s"] for r in store.records()] == [100.0]  # the first write stands


def _writer(url: str, worker: int, count: int, shared: list[dict]) -> None:
    store = ResultsStore(url)
    for i in range(count):
        store.insert(make_record(run_id=f"w{worker}", batch=i + 1))
        if i < len(shared):  # every writer also stores the same records: each must be one row
            store.insert(shared[i])


def test_four_processes_writing_at_once_lose_and_duplicate_nothing(store_url):
    ResultsStore(store_url)
    shared = [make_record(run_id="shared", batch=i + 1) for i in range(20)]
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(store_url, w, 200, shared)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=600)
        assert w.exitcode == 0
    records = ResultsStore(store_url, create=False).records()
    assert len(records) == 4 * 200 + 20 and len({r["uid"] for r in records}) == len(records)
    for w in range(4):
        assert sorted(r["batch"] for r in records if r["run_id"] == f"w{w}") == list(range(1, 201))


def test_merge_sqlite_to_postgresql_to_sqlite_is_identical_and_once(postgres, tmp_path, capsys):
    first, last = tmp_path / "first.db", tmp_path / "last.db"
    _fill(ResultsStore(first))
    shared = new_database(postgres, f"t_{uuid.uuid4().hex[:12]}")
    code, _, err = run_cli(capsys, "--workdir", tmp_path, "--store", shared, "results", "merge", first)
    assert code == 0 and "6 new rows, 0 already present" in err, err
    code, _, err = run_cli(capsys, "--workdir", tmp_path, "results", "merge", shared, "--into", last)
    assert code == 0 and "6 new rows, 0 already present" in err and "postgresql://postgres@/t_" in err, err
    assert _everything(ResultsStore(last)) == _everything(ResultsStore(first)) == _everything(ResultsStore(shared))
    code, _, err = run_cli(capsys, "--workdir", tmp_path, "--store", shared, "results", "merge", last)
    assert code == 0 and "0 new rows, 6 already present" in err, err
    code, out, _ = run_cli(capsys, "--workdir", tmp_path, "--store", shared, "results", "--json")
    assert code == 0 and len(json.loads(out)) == 3


def test_the_store_comes_from_the_environment_when_not_given(tmp_path, capsys, monkeypatch):
    store = tmp_path / "elsewhere.db"
    _fill(ResultsStore(store))
    monkeypatch.setenv("LEVIT_BENCH_STORE", f"sqlite:///{store}")
    code, out, _ = run_cli(capsys, "--workdir", tmp_path / "work", "results", "--json")
    assert code == 0 and len(json.loads(out)) == 3
    assert not (tmp_path / "work" / "results.db").exists()


@pytest.mark.parametrize("url,message", [
    ("postgresql://postgres@/levit?host=/nonexistent", "cannot reach the results store postgresql://postgres@/levit"),
    ("mysql://root@localhost/levit", "unknown store mysql://root@localhost/levit: give sqlite:///PATH"),
    ("postgresql://postgres@localhost", "names no database"),
])
@pytest.mark.parametrize("command", [("results",), ("run", "--runtime", "onnxruntime", "--platform", "xeon",
                                                    "--model", "levit_128s", "--protocol", "smoke")])
def test_a_store_that_cannot_be_used_is_one_line_and_nothing_is_measured(tmp_path, capsys, url, message, command):
    code, _, err = run_cli(capsys, "--workdir", tmp_path, "--store", url, *command)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "models").exists()  # refused before anything was exported or measured
