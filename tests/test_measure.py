"""The measurement protocol's stopping rule and statistics."""

import numpy as np
import pytest

from levit_bench.errors import LevitBenchError
from levit_bench.runners.measure import PROTOCOLS, Protocol, get_protocol, measure, summarise


class FakeClock:
    """Time advances only when the measured call runs, by the durations given."""

    def __init__(self, durations):
        self.now = 0.0
        self.durations = iter(durations)
        self.calls = 0

    def __call__(self):
        return self.now

    def call(self):
        self.calls += 1
        self.now += next(self.durations)


def test_stops_only_when_both_count_and_duration_are_reached():
    protocol = Protocol("t", warmup_calls=3, warmup_s=1.0, min_calls=10, min_s=5.0)
    # fast calls: the duration decides (5 s of 0.125 s calls = 40 samples)
    clock = FakeClock([0.125] * 1000)
    timings = measure(clock.call, protocol, clock)
    assert timings.warmup_calls == 8  # 1 s of 0.125 s calls, more than the 3 asked
    assert len(timings.samples_s) == 40 and sum(timings.samples_s) == 5.0
    # slow calls: the count decides (10 calls of 2 s, although 5 s are reached after 3)
    clock = FakeClock([2.0] * 1000)
    timings = measure(clock.call, protocol, clock)
    assert timings.warmup_calls == 3 and len(timings.samples_s) == 10


def test_first_call_is_reported_apart_and_every_sample_kept():
    protocol = Protocol("t", warmup_calls=2, warmup_s=0.0, min_calls=4, min_s=0.0)
    clock = FakeClock([7.0, 1.0, 0.5, 0.25, 0.125, 0.0625])
    timings = measure(clock.call, protocol, clock)
    assert timings.first_call_s == 7.0
    assert timings.samples_s == [0.5, 0.25, 0.125, 0.0625]
    assert clock.calls == 6


def test_paper_protocol_is_the_official_speed_test():
    paper = get_protocol("paper")
    assert (paper.warmup_s, paper.min_s) == (10.0, 60.0)
    assert set(PROTOCOLS) >= {"default", "paper"}
    with pytest.raises(LevitBenchError, match="unknown protocol 'fast'; known protocols: default, paper"):
        get_protocol("fast")


def test_statistics():
    samples = [0.010, 0.012, 0.011, 0.030, 0.009, 0.010, 0.011]
    stats = summarise(samples, batch=16)
    ms = np.array(samples) * 1e3
    assert stats["median_ms"] == pytest.approx(np.median(ms))
    assert stats["p90_ms"] == pytest.approx(np.percentile(ms, 90))
    assert stats["p99_ms"] == pytest.approx(np.percentile(ms, 99))
    assert stats["mean_ms"] == pytest.approx(ms.mean())
    assert stats["std_ms"] == pytest.approx(ms.std(ddof=1))
    assert stats["cv"] == pytest.approx(ms.std(ddof=1) / ms.mean())
    assert stats["images_per_s"] == pytest.approx(16 / np.median(samples))
    assert stats["n_samples"] == 7
