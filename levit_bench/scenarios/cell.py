"""A cell measured under a LoadGen scenario: what `session.run_cell` calls instead of the
closed-loop protocol when a request names a scenario (`drive`), giving the record's figures
and the outputs LoadGen's queries produced, for the trust gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from levit_bench.runners.measure import Protocol, summarise
from levit_bench.scenarios.loadgen import run_scenario
from levit_bench.scenarios.settings import ScenarioSettings


ESTIMATE = Protocol("estimate", warmup_calls=2, warmup_s=0.5, min_calls=3, min_s=0.5)
HEADROOM = 1.25  # LoadGen sizes the offline query to last min_duration x 1.1 at the expected rate: aim past it


def expected_rate(runner: Any, images: np.ndarray, batch: int) -> float:
    """Images/s the runner's streams reach in a short closed loop, with headroom: the rate an
    offline run expects (LoadGen sizes its one query from it; too low a rate ends the query before
    the minimum duration, and the run is INVALID)."""
    timings = runner.measure(runner.to_input(images[:batch]), ESTIMATE)
    return HEADROOM * summarise(timings.samples_s, batch, timings.wall_s)["images_per_s"]


def drive(runner: Any, images: np.ndarray, batch: int, scenario: dict,
          log_dir: Path) -> tuple[dict, np.ndarray, list[int]]:
    """Run `scenario` (ScenarioSettings as a dict) on the loaded `runner`, its QSL `images`; the
    record's fields, the output row of every QSL image a query answered, and their indices."""
    settings = ScenarioSettings(**scenario)
    expected = expected_rate(runner, images, batch) if settings.scenario == "offline" and not settings.target_qps \
        else None
    result = run_scenario(runner.stream_calls(), images, batch, settings, log_dir, expected,
                          runner.to_input, runner.to_numpy)
    summary = result.summary
    answered = sorted(result.outputs)
    stats = summarise(result.latencies_s, 1) if result.latencies_s else {}
    fields = {
        **stats,
        "samples_ms": [s * 1e3 for s in result.latencies_s],
        "images_per_s": summary["samples_per_s"],  # LoadGen's figure, not one per sample
        "median_ms": summary["latency_ms"].get("p50"), "p90_ms": summary["latency_ms"].get("p90"),
        "p99_ms": summary["latency_ms"].get("p99"),
        "valid": summary["valid"], "failed_constraints": summary["failed"], "latency_ms": summary["latency_ms"],
        "metric_ms": summary["metric_ms"], "early_stopping_ms": summary["early_stopping_ms"],
        "queries_needed": summary["queries_needed"],
        "loadgen_logs": result.logs, "loadgen_batches": result.batches,
        "expected_qps": expected, "parity_from": "loadgen responses",
    }
    return fields, np.stack([result.outputs[i] for i in answered]), answered
