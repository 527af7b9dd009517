"""A LoadGen scenario and its settings, checked when made: one line for a value it cannot run."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from levit_bench.errors import LevitBenchError
from levit_bench.platforms import positive_int

SCENARIOS = ("single-stream", "multi-stream", "server", "offline")  # LoadGen's, by their CLI names
DEFAULT_LATENCY_BOUND_MS = 15.0
DEFAULT_SAMPLES_PER_QUERY = 8
DEFAULT_MIN_DURATION_S = 10.0
DEFAULT_MIN_QUERIES = 100
DEFAULT_MAX_WAIT_MS = 2.0
COMMON = ("scenario", "min_duration_s", "min_queries")
OWN = {"single-stream": (), "multi-stream": ("samples_per_query",),  # the settings each scenario reads
       "server": ("target_qps", "latency_bound_ms", "max_wait_ms"), "offline": ("target_qps",)}


class ScenarioError(LevitBenchError):
    pass


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class ScenarioSettings:
    scenario: str
    target_qps: float | None = None  # server: the arrival rate; offline: the rate expected (None: measured first)
    latency_bound_ms: float = DEFAULT_LATENCY_BOUND_MS  # server: the latency 99% of queries must meet
    samples_per_query: int = DEFAULT_SAMPLES_PER_QUERY  # multi-stream: images per query
    min_duration_s: float = DEFAULT_MIN_DURATION_S
    min_queries: int = DEFAULT_MIN_QUERIES
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS  # server: how long a batch waits for more queued samples

    def __post_init__(self):
        if self.scenario not in SCENARIOS:
            raise ScenarioError(f"unknown scenario {self.scenario!r}; the scenarios are {', '.join(SCENARIOS)}")
        if self.target_qps is not None and not (_number(self.target_qps) and self.target_qps > 0):
            raise ScenarioError(f"--target-qps must be a positive number of queries per second, not {self.target_qps}")
        if self.scenario == "server" and self.target_qps is None:
            raise ScenarioError("the server scenario needs --target-qps (or `levit-bench capacity` to find it)")
        for flag, value in (("--latency-bound-ms", self.latency_bound_ms), ("--min-duration", self.min_duration_s)):
            if not (_number(value) and value > 0):
                raise ScenarioError(f"{flag} must be a positive number, not {value}")
        if not (_number(self.max_wait_ms) and self.max_wait_ms >= 0):
            raise ScenarioError(f"--max-wait-ms must be a number >= 0, not {self.max_wait_ms}")
        for flag, value in (("--samples-per-query", self.samples_per_query), ("--min-queries", self.min_queries)):
            if not positive_int(value):
                raise ScenarioError(f"{flag} must be a positive integer, not {value}")

    def as_dict(self) -> dict:
        """The settings the scenario reads (those of another scenario left out: they would make
        two equal runs two cells)."""
        return {k: v for k, v in asdict(self).items() if k in COMMON + OWN[self.scenario]}
