"""Sweeps: isolated cells (crash, timeout), resuming after a kill; the run command."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from levit_bench.store import open_store
from levit_bench.runners.session import new_run_id
from levit_bench.runners.sweep import plan, run_sweep, sweep_requests

RUNTIMES = ["openvino", "onnxruntime"]


def _sweep(workdir, runtimes, **kwargs):
    requests = sweep_requests(plan(["levit_128s"], runtimes, workdir), "xeon", workdir, new_run_id(), protocol="smoke")
    store = open_store(workdir)
    return run_sweep(requests, workdir, done_rounds=store.count_ok, on_record=store.insert, **kwargs)


def test_a_crashing_runtime_is_a_failed_row_and_the_sweep_goes_on(workdir_with_artifact, tmp_path, monkeypatch):
    shadow = tmp_path / "shadow" / "openvino"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "shadow"))  # the cells' processes see a broken openvino
    outcomes = _sweep(workdir_with_artifact, RUNTIMES)
    by_runtime = {o.cell.runtime: o for o in outcomes}  # the order is shuffled
    assert {r: o.status for r, o in by_runtime.items()} == {"openvino": "failed", "onnxruntime": "ok"}
    assert by_runtime["openvino"].error == "crashed with SIGSEGV"
    stored = {r["runtime"]: r for r in open_store(workdir_with_artifact).records()}
    assert stored["openvino"]["status"] == "failed" and stored["openvino"]["error"] == "crashed with SIGSEGV"
    assert stored["openvino"]["artifact_sha256"] == stored["onnxruntime"]["artifact_sha256"]
    assert stored["onnxruntime"]["status"] == "ok" and stored["onnxruntime"]["images_per_s"] > 0


def test_a_timeout_is_a_failed_row(workdir_with_artifact):
    outcomes = _sweep(workdir_with_artifact, RUNTIMES, cell_timeout_s=0.5)
    assert [o.status for o in outcomes] == ["failed", "failed"]
    records = open_store(workdir_with_artifact).records()
    assert [r["error"] for r in records] == ["timed out after 0.5 s"] * 2
    assert {r["runtime"] for r in records} == set(RUNTIMES)


def test_resume_skips_what_is_stored_unless_forced(workdir_with_artifact):
    assert [o.status for o in _sweep(workdir_with_artifact, ["onnxruntime"])] == ["ok"]
    assert [o.status for o in _sweep(workdir_with_artifact, ["onnxruntime"])] == ["skipped"]
    assert [o.status for o in _sweep(workdir_with_artifact, ["onnxruntime"], force=True)] == ["ok"]
    assert len(open_store(workdir_with_artifact).records(status="ok")) == 2


def _cli(workdir, *args, **popen):
    command = [sys.executable, "-m", "levit_bench", "--workdir", str(workdir), *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def test_a_sweep_killed_midway_loses_nothing_and_resumes(workdir_with_artifact):
    args = ("sweep", "--platform", "xeon", "--models", "levit_128s", "--runtimes", "torch", "onnxruntime",
            "openvino", "--protocol", "smoke", "--rounds", "2")
    sweep = _cli(workdir_with_artifact, *args, start_new_session=True)
    store = open_store(workdir_with_artifact)
    deadline = time.monotonic() + 300
    while not store.records(status="ok"):
        assert sweep.poll() is None and time.monotonic() < deadline, "the sweep ended before it could be killed"
        time.sleep(0.2)
    os.killpg(sweep.pid, signal.SIGKILL)  # the sweep and the cell it was running
    sweep.communicate()
    finished = {r["uid"]: r["runtime"] for r in store.records(status="ok")}
    assert 1 <= len(finished) < 6

    resumed = _cli(workdir_with_artifact, *args)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    ok = store.records(status="ok")
    assert sorted(r["runtime"] for r in ok) == ["onnxruntime", "onnxruntime", "openvino", "openvino", "torch",
                                                 "torch"]  # two rounds each
    for runtime in ("onnxruntime", "openvino", "torch"):
        rounds = [r for r in ok if r["runtime"] == runtime]
        assert sorted(r["round"] for r in rounds) == [1, 2] and len({r["cell"] for r in rounds}) == 1
    assert set(finished) <= {r["uid"] for r in ok}  # the finished cell-rounds were kept, not redone
    assert f"{len(finished)} cell-rounds already measured, skipped" in err


def test_every_round_runs_the_cells_in_a_new_order():
    import random

    from levit_bench.runners.sweep import shuffled

    def orders(seed):
        rng = random.Random(seed)
        return [shuffled(range(8), rng) for _ in range(5)]

    drawn = orders(3)
    assert all(sorted(order) == list(range(8)) for order in drawn)  # each round runs every cell once
    assert len({tuple(order) for order in drawn}) == 5  # and in an order of its own
    assert orders(3) == drawn  # a seed makes them reproducible
    assert orders(None) != orders(None)  # without one, every sweep draws new ones
    rng = random.Random(5)
    grouped = [shuffled(range(9), rng, group=lambda index: index // 3) for _ in range(6)]
    for order in grouped:  # a group's cells run back to back, in an order of their own
        assert sorted(order) == list(range(9))
        assert [len({i // 3 for i in order[k:k + 3]}) for k in (0, 3, 6)] == [1, 1, 1]
    assert len({tuple(order) for order in grouped}) == 6
    assert len({tuple(i // 3 for i in order[::3]) for order in grouped}) > 1  # the groups' order changes too


def test_more_rounds_are_whole_rounds_while_a_cell_wants_them_up_to_the_cap(workdir_with_artifact):
    from levit_bench.runners.sweep import MoreRounds

    rounds = []
    store = open_store(workdir_with_artifact)
    # onnxruntime wants rounds until it has 2, openvino never: every cell runs while one wants
    more = MoreRounds(3, wanted=lambda key: key["runtime"] == "onnxruntime" and store.count_ok(key) < 2)
    outcomes = _sweep(workdir_with_artifact, RUNTIMES, rounds=1, more=more,
                      on_round=lambda number, cells, wanting: rounds.append((number, cells, wanting)))
    assert rounds == [(1, 2, 0), (2, 2, 1)]  # round 2 for both cells; after it nobody wants a third
    assert sorted((r["runtime"], r["round"]) for r in store.records()) == [
        ("onnxruntime", 1), ("onnxruntime", 2), ("openvino", 1), ("openvino", 2)]
    assert all(o.status == "ok" for o in outcomes)
    capped = MoreRounds(3, wanted=lambda key: key["runtime"] == "openvino")  # wants forever: the cap stops it
    _sweep(workdir_with_artifact, RUNTIMES, rounds=1, more=capped, force=True)
    assert sorted(r["round"] for r in store.records() if r["runtime"] == "openvino") == [1, 1, 2, 2, 3]


def test_run_command_json_and_table(workdir_with_artifact):
    process = _cli(workdir_with_artifact, "run", "--runtime", "onnxruntime", "--platform", "xeon",
                   "--model", "levit_128s", "--protocol", "smoke", "--json")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    [record] = json.loads(out)
    for key in ("model", "runtime", "platform", "precision", "batch", "threads", "status", "images_per_s",
                "median_ms", "p90_ms", "cv", "max_abs_diff", "host", "created_at"):
        assert key in record, key
    assert record["status"] == "ok" and record["platform"] == "xeon"
    # measured in a fresh process: the weights (31 MB of fp32) are in what loading added
    assert 10 < record["load_rss_mb"] < record["peak_rss_mb"]
    process = _cli(workdir_with_artifact, "results")
    out, _ = process.communicate(timeout=120)
    assert "levit_128s" in out and "onnxruntime" in out and record["host"] in out


@pytest.mark.parametrize("args,message", [
    (("run", "--runtime", "onnxruntime", "--platform", "moon", "--model", "levit_128s"), "unknown platform 'moon'"),
    (("run", "--runtime", "onnxruntime", "--platform", "xeon", "--model", "levit_9"), "unknown model 'levit_9'"),
    (("sweep", "--platform", "xeon", "--runtimes", "torch:fast"), "unknown runtime variant 'torch:fast'"),
    (("sweep", "--platform", "xeon", "--rounds", "2", "--target", "0.02"), "--target needs --rounds 3 or more"),
    (("sweep", "--platform", "xeon", "--target", "0.02", "--max-rounds", "2"),
     "--max-rounds (2) must be at least --rounds (3)"),
])
def test_bad_requests_are_one_line_errors(workdir_with_artifact, args, message):
    process = _cli(workdir_with_artifact, *args)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert len(err.strip().splitlines()) == 1 and message in err
    assert open_store(workdir_with_artifact).records() == []


def test_sweep_target_adds_rounds_until_the_cap_and_names_the_cells_still_wide(workdir_with_artifact):
    process = _cli(workdir_with_artifact, "sweep", "--platform", "xeon", "--models", "levit_128s", "--runtimes",
                   "onnxruntime", "--protocol", "smoke", "--rounds", "3", "--target", "0.001", "--max-rounds", "4")
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert sorted(r["round"] for r in open_store(workdir_with_artifact).records()) == [1, 2, 3, 4]
    assert "1 cells still wider than ±0.1% after 4 rounds" in err and "levit_128s / onnxruntime" in err


def test_sweep_profile_profiles_every_cell_measured_ok_once_and_stores_it(workdir_with_artifact):
    process = _cli(workdir_with_artifact, "sweep", "--platform", "xeon", "--models", "levit_128s", "--runtimes",
                   "onnxruntime", "openvino", "--protocol", "smoke", "--rounds", "1", "--profile")
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "2 of 2 cells profiled and stored" in err
    profiles = open_store(workdir_with_artifact).profile_records()
    assert sorted(p["runtime"] for p in profiles) == ["onnxruntime", "openvino"]
    for profile in profiles:
        assert profile["model"] == "levit_128s" and profile["batch"] == 16 and profile["uid"]
        assert abs(sum(c["ms"] for c in profile["components"]) - profile["kernels_ms"]) < 1e-2
