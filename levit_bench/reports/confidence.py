"""How sure a speed is: a cell's rounds aggregated, with bootstrap confidence intervals.

A cell's speed is the median over its rounds of each round's images/s (batch / median
latency). Its 95% interval comes from a two-level bootstrap: each draw resamples the rounds
(with replacement), and within every drawn round its latency samples, and takes the same
statistic. The rounds carry what differs between processes (placement, frequency, caches:
±15% on a small VM), the samples what differs within one. A ratio of two cells gets its own
interval from their draws. Draws are seeded from the cells' ids, so an interval is the same
every time it is computed from the same rows.
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
    """The round's samples as images/s (batch / latency)."""
    samples = np.asarray(record.get("samples_ms") or [record["median_ms"]], dtype=float)
    return record["batch"] / (samples / 1e3)


def bootstrap(rounds: list[np.ndarray], seed: int, draws: int = DRAWS, level: float = LEVEL) -> Estimate:
    """The median over rounds of each round's median, with its two-level bootstrap interval."""
    if not rounds:
        raise ValueError("no rounds to bootstrap")
    rng = np.random.default_rng(seed)
    count = len(rounds)
    # each round's resampled medians, then for each draw a resample of the rounds
    medians = np.stack([np.median(rng.choice(r, size=(draws, len(r))), axis=1) for r in rounds])
    picked = rng.integers(0, count, size=(draws, count))
    which = rng.integers(0, draws, size=(draws, count))
    distribution = np.median(medians[picked, which], axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(distribution, [tail, 100 - tail])
    value = float(np.median([np.median(r) for r in rounds]))
    return Estimate(value, float(low), float(high), distribution)


def ratio(a: Estimate, b: Estimate, level: float = LEVEL) -> Estimate:
    """b / a, with the interval of the ratio of their independent bootstrap draws."""
    distribution = b.draws / a.draws
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(distribution, [tail, 100 - tail])
    return Estimate(b.value / a.value, float(low), float(high), distribution)


def estimate(rounds: list[Mapping]) -> Estimate:
    """A cell's speed from its successful rounds (records of one cell)."""
    ordered = sorted(rounds, key=lambda r: (r.get("round") or 0, r.get("created_at") or "", r.get("uid") or ""))
    return bootstrap([round_speeds(r) for r in ordered], _seed(*(r.get("uid") or "" for r in ordered)))


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
