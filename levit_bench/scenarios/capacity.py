"""Capacity: the highest server arrival rate whose LoadGen run is VALID under a latency bound.

The search starts from the offline throughput (a server cannot answer faster than the SUT
computes), steps down (or up, while the rate holds) until a VALID and an INVALID rate bracket
the capacity, then bisects the bracket until the two are within `tolerance` of each other.
Each probe is a whole server run, measured and stored by the caller: this module knows the
rates and their verdicts only.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from levit_bench.errors import LevitBenchError
from levit_bench.scenarios.settings import ScenarioSettings

TOLERANCE = 0.02  # the bracket's width at the end, relative to its VALID rate
STEP_DOWN = 0.7  # below an INVALID rate, the next rate tried
STEP_UP = 1.1  # above a VALID offline rate, the next rate tried
MOST_PROBES = 16
# a rate whose run early stopping could not judge is run again, with the queries LoadGen asks for,
# this many times at most (at 19 QPS, 487 queries with one over the bound still needed 175 more)
RERUNS = 3
LOWEST = 0.05  # no rate above this share of the offline throughput held: the search ends without one


@dataclass(frozen=True)
class Probe:
    target_qps: float
    valid: bool
    uid: str | None = None  # the stored server run's
    p99_ms: float | None = None
    earlier_uids: tuple[str, ...] = ()  # the runs at this rate early stopping could not judge, also stored


@dataclass
class Capacity:
    ceiling_qps: float  # where it started: the offline throughput
    probes: list[Probe] = field(default_factory=list)

    @property
    def capacity_qps(self) -> float | None:
        """The highest rate probed VALID (None: none was)."""
        return max((p.target_qps for p in self.probes if p.valid), default=None)

    @property
    def lowest_invalid_qps(self) -> float | None:
        above = [p.target_qps for p in self.probes if not p.valid and p.target_qps > (self.capacity_qps or 0)]
        return min(above, default=None)

    def as_dict(self) -> dict:
        return {"capacity_qps": self.capacity_qps, "lowest_invalid_qps": self.lowest_invalid_qps,
                "ceiling_qps": self.ceiling_qps,
                "probes": [{**asdict(p), "earlier_uids": list(p.earlier_uids)} for p in self.probes]}  # as JSON reads


def _rate(value: float) -> float:
    return float(f"{value:.4g}")  # a rate LoadGen is given, and the record shows, to 4 digits


def search(probe: Callable[[float], Probe], ceiling_qps: float, tolerance: float = TOLERANCE,
           most: int = MOST_PROBES, on_probe: Callable[[Probe], None] = lambda probe: None) -> Capacity:
    """Bracket and bisect the capacity from `ceiling_qps`, calling `probe(rate)` for each run;
    `on_probe` hears each verdict. Ends when the bracket is within `tolerance`, after `most`
    probes, or with no VALID rate above LOWEST of the ceiling."""
    if not (math.isfinite(ceiling_qps) and ceiling_qps > 0):
        raise LevitBenchError(f"the offline throughput to start from must be a positive rate, not {ceiling_qps}")
    found = Capacity(ceiling_qps)

    def tried(rate: float) -> bool:
        result = probe(_rate(rate))
        found.probes.append(result)
        on_probe(result)
        return result.valid

    rate = ceiling_qps
    if tried(rate):
        while len(found.probes) < most and tried(rate := rate * STEP_UP):
            pass
    else:
        while rate > LOWEST * ceiling_qps and len(found.probes) < most and not tried(rate := rate * STEP_DOWN):
            pass
    while (low := found.capacity_qps) is not None and (high := found.lowest_invalid_qps) is not None \
            and high - low > tolerance * low and len(found.probes) < most:
        tried(math.sqrt(low * high))
    return found


CARRIED = ("run_id", "model", "family", "runtime", "runtime_version", "mode", "platform", "platform_info", "precision",
           "batch", "cores", "streams", "threads", "host", "cpu_model", "host_info", "versions", "artifact_sha256",
           "protocol", "pinned_cores")  # what a capacity record takes from its offline run


def _inconclusive(run: dict) -> bool:
    """A server run INVALID only because early stopping had too few queries to conclude."""
    return not run["valid"] and run.get("failed_constraints") == ["Early stopping satisfied"] \
        and bool(run.get("queries_needed"))


class _ProbeFailed(Exception):
    def __init__(self, rate: float, record: dict):
        self.rate, self.record = rate, record


def find_capacity(measure: Callable[[dict], dict], settings: dict, tolerance: float = TOLERANCE,
                  on_probe: Callable[[Probe], None] = lambda probe: None) -> dict:
    """The capacity record of one search: `measure(scenario)` runs a cell under a scenario's
    settings (a dict, as a request carries them) and gives its record, which the caller has
    stored; `settings` are the server's (ScenarioSettings.as_dict() of "server", without a
    target rate). The offline run comes first, then a server run per rate probed."""
    offline = measure(ScenarioSettings("offline", min_duration_s=settings["min_duration_s"],
                                       min_queries=settings["min_queries"]).as_dict())
    record = {**{k: offline.get(k) for k in CARRIED}, "uid": uuid.uuid4().hex,
              "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "latency_bound_ms": settings["latency_bound_ms"],
              "scenario_settings": json.dumps({k: v for k, v in settings.items() if k not in ("scenario", "target_qps")},
                                              sort_keys=True),
              "tolerance": tolerance, "offline_uid": offline["uid"], "offline_qps": offline.get("images_per_s"),
              "status": "failed", "error": None}
    if offline["status"] != "ok":
        return {**record, "error": f"the offline run failed: {offline['error']}"}
    probes: list[Probe] = []

    def probe(rate: float) -> Probe:
        queries, runs = settings["min_queries"], []
        for _ in range(1 + RERUNS):
            run = measure(ScenarioSettings(**{**settings, "scenario": "server", "target_qps": rate,
                                              "min_queries": queries}).as_dict())
            if run["status"] != "ok":
                raise _ProbeFailed(rate, run)
            runs.append(run)
            if not _inconclusive(run):
                break
            # too few queries for early stopping to say whether the bound held: again, with the
            # queries LoadGen says it would need (and a tenth more, for those that may be late)
            queries = run["n_samples"] + int(1.1 * run["queries_needed"]) + 1
        return Probe(rate, bool(run["valid"]), run["uid"], run.get("p99_ms"), tuple(r["uid"] for r in runs[:-1]))

    def heard(result: Probe) -> None:
        probes.append(result)
        on_probe(result)

    try:
        found = search(probe, offline["images_per_s"], tolerance, on_probe=heard)
    except _ProbeFailed as e:
        partial = Capacity(offline["images_per_s"], probes).as_dict()
        return {**record, **partial, "error": f"the server run at {e.rate:g} QPS failed: {e.record['error']}"}
    return {**record, **found.as_dict(), "status": "ok"}
