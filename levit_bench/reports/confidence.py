"""How sure a speed is: a cell's rounds aggregated, with bootstrap confidence intervals.

A cell's speed is the median over its rounds of each round's images/s (batch / median
latency). Its 95% interval comes from a two-level bootstrap: each draw resamples the rounds
(with replacement), and within every drawn round its latency samples, and takes the same
statistic. The rounds carry what differs between processes (placement, frequency, caches:
±15% on a small VM), the samples what differs within one. A ratio of two cells gets its own
interval: paired when the two were measured round by round in the same sweep (the host's
drift over a sweep then cancels), else from their independent draws. Draws are seeded from
the cells' ids, so an interval is the same every time it is computed from the same rows.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from levit_bench.records import CELL_KEY, cell_id, stability_flags

DRAWS = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    draws: np.ndarray  # the bootstrap distribution, for ratios

    @property
    def ci(self) -> tuple[float, float]:
        return self.low, self.high

    @property
    def half_width(self) -> float:
        """Half the interval's width, relative to the value."""
        return (self.high - self.low) / 2 / self.value if self.value else float("inf")


def _seed(*labels: str) -> int:
    return zlib.crc32("|".join(labels).encode())


def round_speeds(record: Mapping) -> np.ndarray:
    """The round's samples as images/s (batch / latency). Where the round's rate is not one
    request's (several streams in flight: every image over the wall time; a LoadGen scenario: its
    samples/s), the samples keep their spread around the rate the round measured; a LoadGen round
    is its one rate (its latencies include the queue: offline's span the whole run)."""
    if record.get("scenario"):  # a sample's latency is its wait in LoadGen's queue too: no spread of the rate
        return np.asarray([record["images_per_s"]], dtype=float)
    samples = np.asarray(record.get("samples_ms") or [record["median_ms"]], dtype=float)
    speeds = record["batch"] / (samples / 1e3)
    if (record.get("streams") or 1) > 1:
        speeds *= record["images_per_s"] / np.median(speeds)
    return speeds


def _round_medians(rounds: list[np.ndarray], rng: np.random.Generator, draws: int) -> np.ndarray:
    """(rounds, draws): each round's median over a resample of its samples, `draws` times."""
    return np.stack([np.median(rng.choice(r, size=(draws, len(r))), axis=1) for r in rounds])


def _median_of(medians: np.ndarray, picked: np.ndarray, rng: np.random.Generator, draws: int) -> np.ndarray:
    """Per draw, the median over the rounds `picked` for it, each at a random one of its resamples."""
    which = rng.integers(0, draws, size=picked.shape)
    return np.median(medians[picked, which], axis=1)


def _interval(value: float, distribution: np.ndarray, level: float) -> Estimate:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(distribution, [tail, 100 - tail])
    return Estimate(value, float(low), float(high), distribution)


def median_speed(rounds: list[np.ndarray]) -> float:
    """The speed of a cell: the median over its rounds of each round's median."""
    return float(np.median([np.median(r) for r in rounds]))


def bootstrap(rounds: list[np.ndarray], seed: int, draws: int = DRAWS, level: float = LEVEL) -> Estimate:
    """The median over rounds of each round's median, with its two-level bootstrap interval."""
    if not rounds:
        raise ValueError("no rounds to bootstrap")
    rng = np.random.default_rng(seed)
    medians = _round_medians(rounds, rng, draws)
    picked = rng.integers(0, len(rounds), size=(draws, len(rounds)))
    return _interval(median_speed(rounds), _median_of(medians, picked, rng, draws), level)


def ratio(a: Estimate, b: Estimate, level: float = LEVEL) -> Estimate:
    """b / a, with the interval of the ratio of their independent bootstrap draws."""
    return _interval(b.value / a.value, b.draws / a.draws, level)


def paired_ratio(rounds_a: list[np.ndarray], rounds_b: list[np.ndarray], seed: int, draws: int = DRAWS,
                 level: float = LEVEL) -> Estimate:
    """b / a over rounds measured side by side (round i of each in the same sweep round, minutes
    apart): each draw resamples the rounds together, so what moved both (the host drifting over
    a sweep) cancels in the ratio instead of widening it."""
    if len(rounds_a) != len(rounds_b) or not rounds_a:
        raise ValueError("paired rounds come in pairs")
    rng = np.random.default_rng(seed)
    medians_a, medians_b = _round_medians(rounds_a, rng, draws), _round_medians(rounds_b, rng, draws)
    picked = rng.integers(0, len(rounds_a), size=(draws, len(rounds_a)))
    distribution = _median_of(medians_b, picked, rng, draws) / _median_of(medians_a, picked, rng, draws)
    return _interval(median_speed(rounds_b) / median_speed(rounds_a), distribution, level)


def _ordered(rounds: list[Mapping]) -> list[Mapping]:
    return sorted(rounds, key=lambda r: (r.get("round") or 0, r.get("created_at") or "", r.get("uid") or ""))


def estimate(rounds: list[Mapping]) -> Estimate:
    """A cell's speed from its successful rounds (records of one cell)."""
    ordered = _ordered(rounds)
    return bootstrap([round_speeds(r) for r in ordered], _seed(*(r.get("uid") or "" for r in ordered)))


def _sweep_round(record: Mapping) -> tuple | None:
    return (record.get("run_id"), record["round"]) if record.get("round") else None


def cell_ratio(rounds_a: list[Mapping], rounds_b: list[Mapping]) -> Estimate:
    """Cell B's speed over cell A's. Paired (`paired_ratio`) when the two were measured in the
    same sweep rounds, every round of each with its twin; else from independent draws."""
    pairs_a = {_sweep_round(r): r for r in rounds_a}
    pairs_b = {_sweep_round(r): r for r in rounds_b}
    if None in pairs_a or set(pairs_a) != set(pairs_b) or len(pairs_a) != len(rounds_a) \
            or len(pairs_b) != len(rounds_b) or len(rounds_a) < 2:
        return ratio(estimate(rounds_a), estimate(rounds_b))
    keys = sorted(pairs_a, key=str)
    seed = _seed(*(pairs_a[k].get("uid") or "" for k in keys), *(pairs_b[k].get("uid") or "" for k in keys))
    return paired_ratio([round_speeds(pairs_a[k]) for k in keys], [round_speeds(pairs_b[k]) for k in keys], seed)


@dataclass
class Cell:
    """The successful rounds of one cell (optionally within one run, host, ...) and their estimate."""

    key: dict  # the CELL_KEY fields, plus any extra grouping field
    rounds: list[dict]

    @functools.cached_property
    def estimate(self) -> Estimate:
        return estimate(self.rounds)

    @property
    def flags(self) -> list[str]:
        return stability_flags(self.rounds)

    def summary(self) -> dict:
        """One line of `results --aggregate`."""
        found = self.estimate
        return {
            **{k: self.key.get(k) for k in ("model", "runtime", "mode", "platform", "precision", "batch", "host")},
            "cpu_model": self.rounds[-1].get("cpu_model"),
            "rounds": len(self.rounds),
            "images_per_s": round(found.value, 3),
            "images_per_s_ci": [round(found.low, 3), round(found.high, 3)],
            "half_width": round(found.half_width, 4),
            "noisy": bool(self.flags),
            "flags": self.flags,
            "cell": cell_id(self.key),
        }


def group_cells(records: Iterable[Mapping], extra: tuple[str, ...] = ()) -> list[Cell]:
    """The successful records grouped into cells (by CELL_KEY and the `extra` fields), oldest first."""
    cells: dict[tuple, Cell] = {}
    for record in records:
        if record.get("status") != "ok" or not record.get("images_per_s"):
            continue
        fields = (*CELL_KEY, *extra)
        key = tuple(str(record.get(f)) for f in fields)
        if key not in cells:
            cells[key] = Cell({f: record.get(f) for f in fields}, [])
        cells[key].rounds.append(dict(record))
    return list(cells.values())
