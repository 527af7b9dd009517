"""The report's deployment view: what a model gives on the cores, streams and scenarios it is
served with, beyond the paper's one pinned thread.

- a scenarios table: per model and runtime (and cores, streams), LoadGen's offline images/s,
  single-stream p90 latency and the server capacity under its bound, each the median over
  rounds with a 95% interval;
- a scaling table: closed-loop images/s at each core count measured, and the efficiency
  (speed-up over one core, divided by the cores);
- a latency-throughput figure per model: images/s against p99 latency, a curve per runtime
  through its cells (batch, streams, cores, scenario).
"""

from __future__ import annotations

import statistics
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from levit_bench.records import CELL_KEY
from levit_bench.reports.confidence import LEVEL, estimate
from levit_bench.reports.figures import save_figure
from levit_bench.runtimes import variant_name

DRAWS = 2000


def _over_rounds(values: list[float], label: str) -> dict:
    """The median of one value per round, with a 95% bootstrap interval over the rounds (one
    round: no interval)."""
    median = statistics.median(values)
    if len(values) < 2:
        return {"value": median, "ci": None, "rounds": len(values)}
    rng = np.random.default_rng(zlib.crc32(label.encode()))
    draws = np.median(rng.choice(np.asarray(values), size=(DRAWS, len(values))), axis=1)
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return {"value": median, "ci": [float(low), float(high)], "rounds": len(values)}


def _cells(records: Iterable[Mapping]) -> dict[tuple, list[Mapping]]:
    cells: dict[tuple, list[Mapping]] = {}
    for record in records:
        if record.get("status") == "ok" and record.get("images_per_s"):
            cells.setdefault(tuple(str(record.get(k)) for k in CELL_KEY), []).append(record)
    return cells


def _deployment(record: Mapping) -> tuple:
    return (record["model"], variant_name(record["runtime"], record.get("mode")), record["platform"],
            record["host"], record.get("cores"), record.get("streams"))


def _best(cells: list[list[Mapping]], value) -> list[Mapping] | None:
    """Of a deployment's cells of one scenario (several batches, bounds), the one its `value` ranks first."""
    return max(cells, key=lambda rounds: statistics.median(value(r) for r in rounds), default=None)


def scenario_rows(records: Iterable[Mapping], capacities: Iterable[Mapping]) -> list[dict]:
    """One row per deployment (model, runtime, platform, host, cores, streams) measured under a
    scenario: offline images/s (its fastest cell), single-stream p90 ms (its fastest cell)
    and server capacity QPS (per latency bound, the searches' median)."""
    by_deployment: dict[tuple, dict[str, list[list[Mapping]]]] = {}
    for rounds in _cells(r for r in records if r.get("scenario")).values():
        by_deployment.setdefault(_deployment(rounds[0]), {}).setdefault(rounds[0]["scenario"], []).append(rounds)
    searches: dict[tuple, dict[float, list[float]]] = {}
    for search in capacities:
        if search.get("status") == "ok" and search.get("capacity_qps"):
            bounds = searches.setdefault(_deployment(search), {})
            bounds.setdefault(search["latency_bound_ms"], []).append(search["capacity_qps"])
            by_deployment.setdefault(_deployment(search), {})
    rows = []
    for key, scenarios in by_deployment.items():
        model, variant, platform, host, cores, streams = key
        row = {"model": model, "variant": variant, "platform": platform, "host": host, "cores": cores,
               "streams": streams, "offline": None, "single_stream_p90_ms": None, "capacity": []}
        offline = _best(scenarios.get("offline", []), lambda r: r["images_per_s"])
        if offline:
            speed = estimate(offline)
            row["offline"] = {"value": speed.value, "ci": [speed.low, speed.high], "rounds": len(offline),
                              "batch": offline[0].get("batch")}
        single = _best(scenarios.get("single-stream", []), lambda r: -_p90(r))
        if single:
            row["single_stream_p90_ms"] = _over_rounds([_p90(r) for r in single], "|".join(map(str, key)))
        for bound, found in sorted(searches.get(key, {}).items()):
            row["capacity"].append({"bound_ms": bound, **_over_rounds(found, f"{key}|{bound}")})
        rows.append(row)
    return sorted(rows, key=lambda r: (r["platform"], r["model"], r["variant"], r["cores"] or 0, r["streams"] or 0))


def _p90(record: Mapping) -> float:
    return (record.get("metric_ms") or {}).get("p90") or record["p90_ms"]


def scaling_rows(records: Iterable[Mapping]) -> list[dict]:
    """Closed-loop images/s per core count, one row per model, runtime, platform, host, batch and
    precision measured at more than one count (one stream per core: --streams 1), with the
    efficiency at each against one core, where one core was measured."""
    groups: dict[tuple, dict[int, list[Mapping]]] = {}
    closed = [r for r in records if not r.get("scenario") and (r.get("streams") or 1) == 1 and r.get("cores")]
    for rounds in _cells(closed).values():
        first = rounds[0]
        key = (first["model"], variant_name(first["runtime"], first.get("mode")), first["platform"], first["host"],
               first.get("batch"), first.get("precision"))
        groups.setdefault(key, {})[first["cores"]] = max(
            groups.get(key, {}).get(first["cores"], []), rounds, key=len)  # the cell with most rounds
    rows = []
    for (model, variant, platform, host, batch, precision), by_cores in groups.items():
        if len(by_cores) < 2:
            continue
        speeds = {cores: estimate(rounds) for cores, rounds in sorted(by_cores.items())}
        one = speeds.get(1)
        rows.append({"model": model, "variant": variant, "platform": platform, "host": host, "batch": batch,
                     "precision": precision,
                     "cores": [{"cores": cores, "images_per_s": s.value, "ci": [s.low, s.high],
                                "speedup": s.value / one.value if one else None,
                                "efficiency": s.value / one.value / cores if one else None}
                               for cores, s in speeds.items()]})
    return sorted(rows, key=lambda r: (r["platform"], r["model"], r["variant"]))


def _p99(record: Mapping) -> float | None:
    return (record.get("latency_ms") or {}).get("p99") or record.get("p99_ms")


def latency_points(records: Iterable[Mapping], model: str) -> dict[str, list[dict]]:
    """A model's cells as (images/s, p99 ms) per runtime, each the median over its rounds: what
    the latency-throughput figure draws (server runs are left to the capacity: their rate is
    the load's, not the runtime's)."""
    curves: dict[str, list[dict]] = {}
    chosen = [r for r in records if r["model"] == model and r.get("scenario") != "server"]
    for rounds in _cells(chosen).values():
        latencies = [p for r in rounds if (p := _p99(r)) is not None]
        if not latencies:
            continue
        first = rounds[0]
        curves.setdefault(variant_name(first["runtime"], first.get("mode")), []).append({
            "images_per_s": statistics.median(r["images_per_s"] for r in rounds),
            "p99_ms": statistics.median(latencies), "batch": first.get("batch"), "cores": first.get("cores"),
            "streams": first.get("streams"), "scenario": first.get("scenario")})
    return {variant: sorted(points, key=lambda p: p["images_per_s"]) for variant, points in curves.items()}


def latency_figure(curves: Mapping[str, list[dict]], model: str, path: Path) -> None:
    """images/s (x) against p99 latency (y, log), a curve per runtime through its cells, each point
    labelled with what made it (batch, cores, streams, scenario)."""
    import matplotlib.pyplot as plt  # after figures, which chose the Agg backend

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for variant, points in curves.items():
        xs, ys = [p["images_per_s"] for p in points], [p["p99_ms"] for p in points]
        (line,) = ax.plot(xs, ys, marker="o", label=variant)
        for p in points:
            label = f"b{p['batch']} c{p['cores']} s{p['streams']}" + (f" {p['scenario']}" if p["scenario"] else "")
            ax.annotate(label, (p["images_per_s"], p["p99_ms"]), textcoords="offset points", xytext=(4, 4),
                        fontsize=6, color=line.get_color())
    ax.set_yscale("log")
    ax.set_xlabel("images/s")
    ax.set_ylabel("p99 latency per request (ms)")
    ax.set_title(f"{model}: latency against throughput")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def has_deployments(records: Iterable[Mapping]) -> bool:
    """Whether the records go beyond the paper's protocol (a scenario, several cores or streams)."""
    return any(r.get("scenario") or (r.get("cores") or 1) > 1 or (r.get("streams") or 1) > 1 for r in records)
