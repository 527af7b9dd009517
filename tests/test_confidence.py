"""Rounds aggregated with bootstrap intervals, stability flags, `results --aggregate`, `compare`."""

import json

import numpy as np
import pytest

from levit_bench.cli import main as cli
from levit_bench.records import MAX_CV, MAX_ROUND_DEVIATION, cell_id, stability_flags
from levit_bench.reports.compare import compare
from levit_bench.reports.confidence import bootstrap, cell_ratio, estimate, group_cells, ratio
from levit_bench.store import open_store
from records import make_record

BATCH = 16


def _rounds(rng, speed: float, rounds: int, samples: int = 20, between: float = 0.03, within: float = 0.04):
    """Latency samples (ms) of `rounds` processes of a runtime whose true speed is `speed` images/s."""
    base_ms = BATCH / speed * 1e3
    return [base_ms * np.exp(rng.normal(0, between)) * np.exp(rng.normal(0, within, samples))
            for _ in range(rounds)]


def _records(rng, speed: float, rounds: int = 3, between: float = 0.03, **fields) -> list[dict]:
    out = []
    for number, samples in enumerate(_rounds(rng, speed, rounds, between=between), 1):
        median = float(np.median(samples))
        out.append(make_record(samples_ms=[float(s) for s in samples], median_ms=median, round=number,
                               images_per_s=BATCH / median * 1e3, n_samples=len(samples),
                               cv=float(np.std(samples, ddof=1) / np.mean(samples)),
                               protocol_params={"min_calls": 10}, **fields))
    return out


def test_the_interval_covers_the_truth_at_about_the_nominal_rate():
    rng = np.random.default_rng(7)
    truth = 120.0
    hits = []
    for trial in range(200):
        rounds = [BATCH / (samples / 1e3) for samples in _rounds(rng, truth, rounds=10)]
        found = bootstrap(rounds, seed=trial)
        hits.append(found.low <= truth <= found.high)
    assert 0.90 <= np.mean(hits) <= 0.99, np.mean(hits)


def test_an_interval_is_reproducible_and_narrows_with_more_rounds():
    rng = np.random.default_rng(1)
    records = _records(rng, 100.0, rounds=3, run_id="r1") + _records(rng, 100.0, rounds=12, run_id="r2")
    few, many = (group_cells(records, extra=("run_id",)))
    assert few.estimate.ci == group_cells(records, extra=("run_id",))[0].estimate.ci  # seeded by the rows
    assert few.estimate.low < few.estimate.value < few.estimate.high
    assert many.estimate.half_width < few.estimate.half_width


def test_stability_flags_name_each_check():
    quiet = [make_record(round=n, cv=0.02, images_per_s=100.0 + n, n_samples=12,
                         protocol_params={"min_calls": 10}) for n in (1, 2, 3)]
    assert stability_flags(quiet) == []
    loud = [dict(quiet[0], cv=MAX_CV + 0.05), dict(quiet[1], noisy=True, noisy_reason="other processes took 30%"),
            dict(quiet[2], images_per_s=101.0 * (1 + MAX_ROUND_DEVIATION + 0.05), n_samples=4)]
    flags = stability_flags(loud)
    assert any(f.startswith("round 1: CV 15%") for f in flags)
    assert "round 2: other load on its core (other processes took 30%)" in flags
    assert "round 3: 4 samples, fewer than the 10 asked for" in flags
    assert any(f.startswith("round 3: +1") and "off the other rounds' median" in f for f in flags)


def test_results_aggregate_prints_one_line_per_cell(tmp_path, capsys):
    rng = np.random.default_rng(2)
    store = open_store(tmp_path)
    for record in _records(rng, 100.0) + _records(rng, 150.0, runtime="openvino", runtime_version="2026.0"):
        store.insert(record)
    store.insert(make_record(status="failed", images_per_s=None, error="boom"))
    assert cli(["--workdir", str(tmp_path), "results", "--aggregate", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2
    for row in rows:
        for key in ("model", "runtime", "mode", "platform", "precision", "batch", "host", "rounds",
                    "images_per_s", "images_per_s_ci", "noisy"):
            assert key in row, key
        low, high = row["images_per_s_ci"]
        assert row["rounds"] == 3 and low < row["images_per_s"] < high and isinstance(row["noisy"], bool)
    assert {row["runtime"]: round(row["images_per_s"], -1) for row in rows} == {"onnxruntime": 100, "openvino": 150}
    assert rows[0]["cell"] == cell_id(store.records()[0])
    assert cli(["--workdir", str(tmp_path), "results", "--aggregate"]) == 0
    assert "95% interval" in capsys.readouterr().out


@pytest.mark.parametrize("speed_b,expected", [(125.0, "faster"), (80.0, "slower"), (100.0, "same")])
def test_compare_verdicts_on_synthetic_rounds(speed_b, expected):
    rng = np.random.default_rng(3)
    records = _records(rng, 100.0, rounds=5) + _records(rng, speed_b, rounds=5, runtime="openvino",
                                                         runtime_version="2026.0")
    [row] = compare(records, "runtime", "onnxruntime", "openvino")
    assert row["verdict"] == expected
    low, high = row["ratio_ci"]
    assert low <= row["ratio"] <= high and row["ratio"] == pytest.approx(speed_b / 100.0, rel=0.08)


def test_a_small_effect_is_the_same_under_min_effect():
    before = _records(np.random.default_rng(4), 100.0, rounds=8, run_id="before", between=0.005)
    after = [dict(r, uid=r["uid"] + "x", run_id="after", samples_ms=[s / 1.03 for s in r["samples_ms"]])
             for r in before]  # the same rounds, 3% faster
    [strict] = compare(before + after, "run", "before", "after", min_effect=0.0)
    [lenient] = compare(before + after, "run", "before", "after", min_effect=0.05)
    assert strict["ratio"] == pytest.approx(1.03, abs=0.002)
    assert strict["ratio_ci"][0] > 1.0 and strict["verdict"] == "faster"
    assert lenient["verdict"] == "same" and lenient["ratio_ci"] == strict["ratio_ci"]


def test_compare_cli_json_and_fail_on_slower(tmp_path, capsys):
    rng = np.random.default_rng(5)
    store = open_store(tmp_path)
    for record in _records(rng, 100.0, run_id="old") + _records(rng, 70.0, run_id="new"):
        store.insert(record)
    args = ["--workdir", str(tmp_path), "compare", "--by", "run", "old", "new", "--json"]
    assert cli(args) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert {"model", "a", "b", "ratio", "ratio_ci", "verdict"} <= set(row) and row["verdict"] == "slower"
    assert cli([*args, "--fail-on-slower"]) == 1
    capsys.readouterr()
    assert cli(["--workdir", str(tmp_path), "compare", "--by", "run", "old", "nowhere"]) == 1
    assert "no successful measurement has run 'nowhere' (the store has: new, old)" in capsys.readouterr().err


def test_results_marks_the_rounds_of_an_unstable_cell(tmp_path, capsys):
    store = open_store(tmp_path)
    for number, speed in enumerate((100.0, 101.0, 130.0), 1):  # round 3 is 29% off the others
        store.insert(make_record(round=number, images_per_s=speed))
    store.insert(make_record(model="levit_192", round=1))
    assert cli(["--workdir", str(tmp_path), "results"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "levit_" in line]
    assert ["(unstable cell)" in row for row in rows] == [True, True, True, False]
    assert cli(["--workdir", str(tmp_path), "results", "--aggregate", "--json"]) == 0
    flagged = {row["model"]: row for row in json.loads(capsys.readouterr().out)}
    assert flagged["levit_128s"]["noisy"] and "round 3: +29% off the other rounds' median" in flagged["levit_128s"]["flags"]
    assert not flagged["levit_192"]["noisy"]


def _drifting(rng, speeds: tuple[float, float], rounds: int, drift: float, between: float = 0.01):
    """Two cells measured round by round while the host's speed drifts (shared by both in a round)."""
    out = ([], [])
    for number in range(1, rounds + 1):
        shared = np.exp(rng.normal(0, drift))
        for cell, speed in enumerate(speeds):
            samples = BATCH / (speed * shared) * 1e3 * np.exp(rng.normal(0, between)) \
                * np.exp(rng.normal(0, 0.02, 20))
            median = float(np.median(samples))
            out[cell].append(make_record(samples_ms=[float(s) for s in samples], median_ms=median, round=number,
                                         images_per_s=BATCH / median * 1e3, runtime=("onnxruntime", "openvino")[cell],
                                         runtime_version=("1.31.1", "2026.0")[cell]))
    return out


def test_a_ratio_of_cells_measured_in_the_same_rounds_is_paired_and_drift_cancels():
    rng = np.random.default_rng(11)
    hits, paired_widths, independent_widths = [], [], []
    for trial in range(100):
        a, b = _drifting(rng, (100.0, 110.0), rounds=8, drift=0.06)
        found = cell_ratio(a, b)
        hits.append(found.low <= 1.10 <= found.high)
        paired_widths.append(found.half_width)
        independent_widths.append(ratio(estimate(a), estimate(b)).half_width)
    assert 0.88 <= np.mean(hits) <= 1.0, np.mean(hits)
    assert np.median(paired_widths) < 0.5 * np.median(independent_widths)  # a 6% drift, shared, is cancelled
    a, b = _drifting(rng, (100.0, 110.0), rounds=8, drift=0.06)
    [row] = compare(a + b, "runtime", "onnxruntime", "openvino")
    assert row["ratio_ci"] == [round(v, 4) for v in cell_ratio(a, b).ci]  # compare pairs them too
    unpaired = [dict(r, round=None) for r in b]  # rounds that cannot be matched: independent draws
    assert cell_ratio(a, unpaired).ci == ratio(estimate(a), estimate(unpaired)).ci
