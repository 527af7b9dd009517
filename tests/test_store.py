"""The results store: schema, filters, concurrent writers, merge without duplicates, CSV."""

import multiprocessing
import sqlite3

import pandas as pd
import pytest

from levit_bench import cli
from levit_bench.store import SCHEMA_VERSION, ResultsStore, StoreError, open_store
from records import make_record as _record


def test_insert_filter_and_read_back(tmp_path):
    store = open_store(tmp_path)
    store.insert(_record())
    store.insert(_record(runtime="openvino", status="failed", error="boom", images_per_s=None))
    assert (tmp_path / "results.db").is_file()
    assert len(store.records()) == 2
    failed = store.records(status="failed")
    assert [r["runtime"] for r in failed] == ["openvino"] and failed[0]["error"] == "boom"
    assert store.records(runtime="onnxruntime")[0]["samples_ms"] == [160.0, 161.0, 159.0]
    with pytest.raises(StoreError, match="cannot filter on colour"):
        store.records(colour="red")


def test_schema_is_versioned(tmp_path):
    open_store(tmp_path)
    db = sqlite3.connect(tmp_path / "results.db")
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="has schema 99, newer than this levit-bench's"):
        open_store(tmp_path)


def test_not_a_database(tmp_path):
    (tmp_path / "results.db").write_text("this is not sqlite")
    with pytest.raises(StoreError, match="results store"):
        open_store(tmp_path)


def _writer(path, worker, count):
    store = ResultsStore(path)
    for i in range(count):
        store.insert(_record(run_id=f"w{worker}", batch=i))


def test_two_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "results.db"
    ResultsStore(path)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(path, w, 150)) for w in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
        assert w.exitcode == 0
    records = ResultsStore(path).records()
    assert len(records) == 300 and len({r["uid"] for r in records}) == 300
    for w in range(2):
        assert sorted(r["batch"] for r in records if r["run_id"] == f"w{w}") == list(range(150))


def test_merge_imports_once(tmp_path):
    here, there = open_store(tmp_path / "here"), open_store(tmp_path / "there")
    shared = _record(model="levit_192")
    here.insert(shared)
    there.insert(shared)
    for _ in range(3):
        there.insert(_record(model="levit_256"))
    assert here.merge(tmp_path / "there" / "results.db") == (3, 1)
    assert here.merge(tmp_path / "there" / "results.db") == (0, 4)
    assert len(here.records()) == 4 and len(here.records(model="levit_256")) == 3
    with pytest.raises(StoreError, match="no results store at"):
        here.merge(tmp_path / "missing.db")


def test_profiles_are_kept_and_merged_and_a_store_older_than_them_still_merges(tmp_path):
    here, there = open_store(tmp_path / "here"), open_store(tmp_path / "there")
    profile = {"uid": "p1", "created_at": "2026-11-22T10:00:00+00:00", "model": "levit_128s",
               "runtime": "onnxruntime", "platform": "xeon", "batch": 16, "host": "h", "total_ms": 70.0,
               "kernels_ms": 64.0, "median_ms": 66.0, "components": [{"name": "mlp", "ms": 20.0, "share": 1.0}]}
    there.insert_profile(profile)
    there.insert(_record())
    assert here.merge(tmp_path / "there" / "results.db") == (2, 0)
    assert here.profile_records("levit_128s") == [profile] and here.profile_records("levit_192") == []
    old = sqlite3.connect(tmp_path / "there" / "results.db")  # as a store made before profiles were kept
    old.execute("DROP TABLE profiles")
    old.commit()
    old.close()
    assert here.merge(tmp_path / "there" / "results.db") == (0, 1)


def test_results_command_csv_json_and_merge(tmp_path, capsys):
    work, other = tmp_path / "work", tmp_path / "other"
    open_store(work).insert(_record())
    open_store(other).insert(_record(model="levit_384", runtime="openvino", images_per_s=20.0))
    assert cli.main(["--workdir", str(work), "results", "merge", str(other / "results.db")]) == 0
    assert "1 new rows, 0 already present" in " ".join(capsys.readouterr().err.split())  # wrapped by path length
    csv = tmp_path / "out.csv"
    assert cli.main(["--workdir", str(work), "results", "--csv", str(csv)]) == 0
    frame = pd.read_csv(csv)
    assert sorted(frame["model"]) == ["levit_128s", "levit_384"]
    assert set(frame.columns) >= {"model", "runtime", "platform", "precision", "batch", "threads", "status",
                                  "images_per_s", "median_ms", "p90_ms", "cv", "max_abs_diff", "host", "created_at"}
    capsys.readouterr()
    assert cli.main(["--workdir", str(work), "results", "--runtime", "openvino", "--json"]) == 0
    import json

    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == ["levit_384"]
    assert cli.main(["--workdir", str(work), "results"]) == 0
    assert "levit_384" in capsys.readouterr().out
