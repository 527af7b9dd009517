"""What LoadGen's `mlperf_log_summary.txt` says, as a record's fields: the verdict and which
constraint failed, samples/s, latency percentiles (ms) and the early-stopping estimate."""

from __future__ import annotations

import re

_PERCENTILE = re.compile(r"^(\d+\.\d+) percentile latency \(ns\)\s*:\s*(\d+)", re.M)
_STATS = {"Min latency (ns)": "min_ms", "Max latency (ns)": "max_ms", "Mean latency (ns)": "mean_ms"}
_RATES = ("Samples per second", "Completed samples per second", "QPS w/o loadgen overhead")
_CONSTRAINT = re.compile(r"^\s+(.+?)\s*:\s*(Yes|NO)\s*$", re.M)
_ESTIMATE = re.compile(r"Early stopping (\d+\.\d+)th percentile estimate: (\d+)")
_NEEDED = re.compile(r"Would need to run at least (\d+) more queries")
_HEADLINE = re.compile(r"^(\d+\.\d+)th percentile latency \(ns\)\s*:\s*(\d+)", re.M)  # the scenario's metric


def _value(text: str, key: str) -> str | None:
    found = re.search(rf"^{re.escape(key)}\s*:\s*(.+?)\s*$", text, re.M)
    return found.group(1) if found else None


def parse_summary(text: str) -> dict:
    """The summary's figures: `valid`, `failed` (the constraints not satisfied), `samples_per_s`
    (multi-stream, which states none: its images per query over the mean query latency),
    `latency_ms` {"p50": .., "p90": .., "p95": .., "p97": .., "p99": .., "p99.9": ..}, min/max/mean,
    the scenario's own metric (`metric_ms`: single-stream's p90, multi-stream's p99 query
    latency), `early_stopping_ms` {"p90": ..} where LoadGen gave an estimate, and where early
    stopping could not conclude, the further queries it says a run would need
    (`queries_needed`)."""
    result = _value(text, "Result is")
    head = text.split("Additional Stats")[0]
    constraints = {name: flag == "Yes" for name, flag in _CONSTRAINT.findall(head)}
    rate = next((float(v) for key in _RATES if (v := _value(text, key)) is not None), None)
    latency = {f"p{float(q):g}": int(ns) / 1e6 for q, ns in _PERCENTILE.findall(text)}
    stats = {field: int(v) / 1e6 for key, field in _STATS.items() if (v := _value(text, key)) is not None}
    estimates = {f"p{float(q):g}": int(ns) / 1e6 for q, ns in _ESTIMATE.findall(text)}
    per_query = _value(text, "samples_per_query")
    if rate is None and per_query and stats.get("mean_ms"):
        rate = round(int(per_query) / (stats["mean_ms"] / 1e3), 2)
    metric = {f"p{float(q):g}": int(ns) / 1e6 for q, ns in _HEADLINE.findall(head)}
    return {"scenario": _value(text, "Scenario"), "valid": result == "VALID", "metric_ms": metric,
            "failed": [name for name, ok in constraints.items() if not ok], "samples_per_s": rate,
            "latency_ms": latency, **stats, "early_stopping_ms": estimates,
            "queries_needed": int(needed.group(1)) if (needed := _NEEDED.search(text)) else None}
