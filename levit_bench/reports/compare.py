"""`compare`: is B faster than A, cell by cell, and how sure is that?

Two sides are picked along one dimension (two runtimes, runs, hosts, precisions, runtime
versions, core counts, stream counts or scenarios, `closed-loop` being the protocol's); every cell measured on both sides, equal in everything else, gets the ratio of
images/s B / A with its 95% bootstrap interval (paired when the two were measured round by
round in one sweep) and a verdict: `same` when the interval holds
1 or the effect is smaller than `min_effect`, else `faster` or `slower` (pyperf's
compare_to, with intervals instead of a t-test, since rounds are few and not normal).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from levit_bench.errors import LevitBenchError
from levit_bench.records import CELL_KEY, stability_flags
from levit_bench.reports.confidence import cell_ratio, estimate
from levit_bench.runtimes import variant_name

DEFAULT_MIN_EFFECT = 0.02


@dataclass(frozen=True)
class Dimension:
    side: str  # how a record's side is read
    differing: tuple[str, ...]  # key fields that may differ between the sides


DIMENSIONS = {
    "runtime": Dimension("variant", ("runtime", "runtime_version", "mode")),
    "run": Dimension("run_id", ()),
    "host": Dimension("host", ("host", "host_label")),  # a fleet host by its label, else by fingerprint
    "precision": Dimension("precision", ("precision",)),
    "version": Dimension("runtime_version", ("runtime_version",)),
    "cores": Dimension("cores", ("cores",)),
    "streams": Dimension("streams", ("streams",)),
    "scenario": Dimension("scenario", ("scenario", "scenario_settings")),
}
CLOSED_LOOP = "closed-loop"  # the scenario side of a record measured under the protocol, not LoadGen


def _field(record: Mapping, name: str, by: str) -> str:
    """A key field as the comparison reads it: across precisions, an int8 cell's file is its
    fp32 source's (the quantized twin is another file of the same network)."""
    if by == "precision" and name == "artifact_sha256":
        return str(record.get("fp32_artifact_sha256") or record.get(name))
    return str(record.get(name))


def _side(record: Mapping, dimension: Dimension) -> str | None:
    if dimension.side == "variant":
        return variant_name(record["runtime"], record.get("mode"))
    if dimension.side == "scenario":
        return record.get("scenario") or CLOSED_LOOP
    if dimension.side == "host":
        return record.get("host_label") or record.get("host")
    value = record.get(dimension.side)
    return None if value is None else str(value)  # cores and streams as the command line gives them


def verdict(found_ratio: float, low: float, high: float, min_effect: float) -> str:
    if low <= 1.0 <= high or abs(found_ratio - 1.0) < min_effect:
        return "same"
    return "faster" if found_ratio > 1.0 else "slower"


def compare(records: Iterable[Mapping], by: str, a: str, b: str, models: list[str] | None = None,
            platforms: list[str] | None = None, min_effect: float = DEFAULT_MIN_EFFECT) -> list[dict]:
    """One row per cell measured on both sides: B / A with its interval and a verdict."""
    if by not in DIMENSIONS:
        raise LevitBenchError(f"--by is one of {', '.join(DIMENSIONS)}, not {by}")
    if min_effect < 0:
        raise LevitBenchError(f"--min-effect must be >= 0, not {min_effect:g}")
    dimension = DIMENSIONS[by]
    shared = [f for f in CELL_KEY if f not in dimension.differing]
    sides: dict[str, dict[tuple, list[dict]]] = {a: {}, b: {}}
    seen = set()
    for record in records:
        if record.get("status") != "ok" or not record.get("images_per_s"):
            continue
        if (models and record["model"] not in models) or (platforms and record["platform"] not in platforms):
            continue
        side = _side(record, dimension)
        seen.add(side)
        if side in sides:
            key = tuple(_field(record, f, by) for f in shared)
            sides[side].setdefault(key, []).append(dict(record))
    missing = [s for s in (a, b) if s not in seen]
    if missing:
        known = ", ".join(sorted(str(s) for s in seen)) or "none"
        raise LevitBenchError(f"no successful measurement has {by} {missing[0]!r} (the store has: {known})")
    rows = []
    for key, rounds_a in sides[a].items():
        rounds_b = sides[b].get(key)
        if not rounds_b:
            continue
        first = rounds_a[0]
        speed_a, speed_b = estimate(rounds_a), estimate(rounds_b)
        found = cell_ratio(rounds_a, rounds_b)
        flags = [f"{a}: {f}" for f in stability_flags(rounds_a)] + [f"{b}: {f}" for f in stability_flags(rounds_b)]
        rows.append({
            "model": first["model"], "runtime": variant_name(first["runtime"], first.get("mode")) if by != "runtime"
            else None, "platform": first["platform"], "batch": first.get("batch"),
            "precision": first.get("precision") if by != "precision" else None,
            "a": a, "b": b, "rounds": [len(rounds_a), len(rounds_b)],
            "a_images_per_s": round(speed_a.value, 3), "b_images_per_s": round(speed_b.value, 3),
            "ratio": round(found.value, 4), "ratio_ci": [round(found.low, 4), round(found.high, 4)],
            "verdict": verdict(found.value, found.low, found.high, min_effect),
            "noisy": bool(flags), "flags": flags,
            # by cores: the speed-up over the cores added (1.0: perfect scaling)
            **({"efficiency": round(found.value * int(a) / int(b), 4)} if by == "cores" else {}),
        })
    if not rows:
        raise LevitBenchError(f"no cell was measured on both sides ({by} {a} and {b}) with everything else equal")
    return rows
