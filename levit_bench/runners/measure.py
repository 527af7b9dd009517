"""The measurement protocol: warm up, then time until enough calls AND enough seconds.

Every sample is kept. The paper's speed_test warmed up for 10 s and averaged 60 s of calls;
`--protocol paper` does the same but reports the median as well as the mean. Wall-clock time
(`time.perf_counter`) is used throughout; on the GPU each call ends with a synchronise.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from levit_bench.errors import LevitBenchError
from levit_bench.runners import thread_use


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
    samples_s: list[float]  # each request's latency
    wall_s: float | None = None  # with several streams: the seconds the measured requests took in all
    streams: int = 1  # requests in flight at once


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


def measure_streams(calls: Sequence[Callable[[], object]], protocol: Protocol,
                    clock: Callable[[], float] = time.perf_counter) -> Timings:
    """`protocol` over several streams: each of `calls` in a loop in a thread of its own, all at
    once (a request in flight on every stream). Each stream's first call runs alone (the first,
    of the first stream, is `first_call_s`); then the warm-up and the measurement count every
    stream's calls together. Every request's latency is a sample, and `wall_s` is the time from
    the measurement's start until its last request finished: images/s is the whole."""
    first = _timed(calls[0], clock)
    for call in calls[1:]:
        _timed(call, clock)
    (warmup, _), (samples, wall_s) = _concurrently(
        calls, [(protocol.warmup_calls - 1, protocol.warmup_s - first), (protocol.min_calls, protocol.min_s)], clock)
    return Timings(first_call_s=first, warmup_calls=1 + len(warmup), samples_s=samples, wall_s=wall_s,
                   streams=len(calls))


def _timed(call: Callable[[], object], clock: Callable[[], float]) -> float:
    started = clock()
    call()
    return clock() - started


def _concurrently(calls: Sequence[Callable[[], object]], phases: Sequence[tuple[int, float]],
                  clock: Callable[[], float]) -> list[tuple[list[float], float]]:
    """Every call in a loop, each in a thread of its own (the same threads through every phase),
    phase after phase: a phase (min_calls, min_s) ends once together they made `min_calls` calls
    and `min_s` seconds passed, and its last calls have ended. Per phase: (each call's latency,
    the seconds from its start until its last call ended). A call that raises stops them all and
    is raised here."""
    results: list[tuple[list[float], float]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    gate = threading.Barrier(len(calls) + 1)  # every phase starts, and ends, with all the threads
    phase: dict = {}

    def loop(call: Callable[[], object]) -> None:
        try:
            for _ in phases:
                gate.wait()
                samples, stop = phase["samples"], phase["stop"]
                while not stop.is_set() and not failures:
                    elapsed = _timed(call, clock)
                    with lock:
                        samples.append(elapsed)
                        if len(samples) >= phase["min_calls"] and clock() - phase["began"] >= phase["min_s"]:
                            stop.set()
                gate.wait()
        except threading.BrokenBarrierError:
            pass
        except BaseException as e:  # the runtime's error, raised in the caller's thread
            failures.append(e)
            gate.abort()
        finally:
            thread_use.ending()

    threads = [threading.Thread(target=loop, args=(call,), name=f"stream-{i}", daemon=True)
               for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    try:
        for min_calls, min_s in phases:
            samples: list[float] = []
            phase.update(samples=samples, stop=threading.Event(), min_calls=min_calls, min_s=min_s, began=clock())
            if min_calls <= 0 and min_s <= 0:
                phase["stop"].set()
            gate.wait()
            gate.wait()
            results.append((samples, clock() - phase["began"]))
    except threading.BrokenBarrierError:
        pass
    finally:  # Ctrl-C in the caller too: each stream ends after its call
        if phase:
            phase["stop"].set()
        gate.abort()
        for thread in threads:
            thread.join()
    if failures:
        raise failures[0]
    return results


def _percentile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarise(samples_s: list[float], batch: int, wall_s: float | None = None) -> dict[str, float]:
    """Latency statistics in ms, CV (std / mean) and images/s: batch / median latency for one
    stream, and with several (`wall_s`: the seconds their requests took in all) every image
    over the wall time."""
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
        "images_per_s": batch * len(ordered) / wall_s if wall_s else batch / median,
        "n_samples": len(ordered),
    }
