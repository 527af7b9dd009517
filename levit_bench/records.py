"""What makes two measurement records the same cell, and the stability checks every cell gets.

Plain functions of records, read by every layer that handles them: a run stamps its record's
`cell`, the store finds finished cells by the same fields, the aggregation, `compare` and the
report group rounds by it. The thresholds of the stability checks live here, in one place
(the README quotes them).
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Iterable, Mapping

# The fields that make two records measurements of the same thing: the same artifact in the
# same runtime build and mode, under the same settings (cores, streams, the LoadGen scenario and
# its settings too) and protocol, on the same host (and, in a fleet, the same host label: two
# hosts of a fleet may be one machine, each on its own cores).
CELL_KEY = ("model", "runtime", "runtime_version", "mode", "platform", "precision", "batch", "cores", "streams",
            "scenario", "scenario_settings", "host", "artifact_sha256", "protocol", "host_label")

# Stability thresholds (pyperf-like): a cell breaking any of them is flagged `unstable`.
MAX_CV = 0.10  # the spread of one round's samples: std / mean
MAX_ROUND_DEVIATION = 0.10  # a round's images/s against the median of the other rounds


def cell_id(record: Mapping) -> str:
    """A short stable id of the record's cell (its CELL_KEY fields; a record measured outside a
    fleet has the id it had before fleets had labels)."""
    fields = [record.get(field) for field in CELL_KEY]
    if fields[-1] is None:
        fields.pop()
    return hashlib.sha256(json.dumps(fields, default=str).encode()).hexdigest()[:16]


def stability_flags(rounds: Iterable[Mapping]) -> list[str]:
    """Why a cell's successful rounds should not be trusted as they are ([]: stable).

    Each check names the round it fails in: a CV above MAX_CV (closed-loop rounds), a round further than
    MAX_ROUND_DEVIATION from the median of the others, load on the pinned core while it
    was measured (the record's `noisy`), fewer samples than its protocol asked for.
    """
    rounds = list(rounds)
    flags = []
    for number, record in enumerate(rounds, 1):
        label = f"round {record.get('round') or number}"
        # under a LoadGen scenario the spread of latencies is queueing, the result itself, not noise
        if not record.get("scenario") and (record.get("cv") or 0.0) > MAX_CV:
            flags.append(f"{label}: CV {record['cv']:.0%} > {MAX_CV:.0%}")
        if record.get("noisy"):
            flags.append(f"{label}: other load on its core ({record.get('noisy_reason') or 'noisy'})")
        asked = (record.get("protocol_params") or {}).get("min_calls")
        if asked and (record.get("n_samples") or len(record.get("samples_ms") or ())) < asked:
            flags.append(f"{label}: {record.get('n_samples')} samples, fewer than the {asked} asked for")
        others = [r["images_per_s"] for r in rounds if r is not record and r.get("images_per_s")]
        if others and record.get("images_per_s"):
            typical = statistics.median(others)
            deviation = record["images_per_s"] / typical - 1
            if abs(deviation) > MAX_ROUND_DEVIATION:
                flags.append(f"{label}: {deviation:+.0%} off the other rounds' median")
    return flags
