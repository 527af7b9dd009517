"""The measurement protocol: warm up, then time until enough calls AND enough seconds.

Every sample is kept. The paper's speed_test warmed up for 10 s and averaged 60 s of calls;
`--protocol paper` does the same but reports the median as well as the mean. Wall-clock time
(`time.perf_counter`) is used throughout; on the GPU each call ends with a synchronise.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from levit_bench.errors import LevitBenchError


@dataclass(frozen=True)
class Protocol:
    name: str
    warmup_calls: int
    warmup_s: float
    min_calls: int
    min_s: float

    def as_dict(self) -> dict:
        return asdict(self)


PROTOCOLS: dict[str, Protocol] = {
    # keeps one LeViT under ~10 s on one core, with enough samples for a stable median
    "default": Protocol("default", warmup_calls=3, warmup_s=1.0, min_calls=10, min_s=3.0),
    # the official speed_test: 10 s of warm-up, 60 s of measurement
    "paper": Protocol("paper", warmup_calls=1, warmup_s=10.0, min_calls=1, min_s=60.0),
    # a functional check, not a measurement: for tests and dry runs
    "smoke": Protocol("smoke", warmup_calls=1, warmup_s=0.0, min_calls=3, min_s=0.0),
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise LevitBenchError(f"unknown protocol {name!r}; known protocols: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


@dataclass(frozen=True)
class Timings:
    first_call_s: float  # the first call after loading, apart from the steady state
    warmup_calls: int
    samples_s: list[float]


def measure(call: Callable[[], object], protocol: Protocol,
            clock: Callable[[], float] = time.perf_counter) -> Timings:
    """Time `call` (which must include any device synchronisation) under `protocol`."""

    def timed_call() -> float:
        t0 = clock()
        call()
        return clock() - t0

    return measure_timed(timed_call, protocol)


def measure_timed(timed_call: Callable[[], float], protocol: Protocol,
                  after_sample: Callable[[], None] = lambda: None) -> Timings:
    """The protocol over calls that time themselves (e.g. on a remote device), in seconds;
    `after_sample` runs after each measured call, outside its timing (a profiler's readout)."""
    first = timed_call()
    warmup_calls, warmup_total = 1, first  # the first call counts towards the warm-up
    while warmup_calls < protocol.warmup_calls or warmup_total < protocol.warmup_s:
        warmup_total += timed_call()
        warmup_calls += 1

    samples: list[float] = []
    total = 0.0
    while len(samples) < protocol.min_calls or total < protocol.min_s:
        elapsed = timed_call()
        after_sample()
        samples.append(elapsed)
        total += elapsed
    return Timings(first_call_s=first, warmup_calls=warmup_calls, samples_s=samples)


def _percentile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarise(samples_s: list[float], batch: int) -> dict[str, float]:
    """Latency statistics in ms, CV (std / mean) and images/s = batch / median latency."""
    ordered = sorted(samples_s)
    mean = statistics.fmean(ordered)
    std = statistics.stdev(ordered) if len(ordered) > 1 else 0.0
    median = statistics.median(ordered)
    return {
        "median_ms": median * 1e3,
        "p90_ms": _percentile(ordered, 0.90) * 1e3,
        "p99_ms": _percentile(ordered, 0.99) * 1e3,
        "mean_ms": mean * 1e3,
        "std_ms": std * 1e3,
        "cv": std / mean if mean > 0 else 0.0,
        "images_per_s": batch / median,
        "n_samples": len(ordered),
    }
