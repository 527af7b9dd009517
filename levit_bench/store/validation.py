"""What a stored row must be for every reader to take it, and how an older row reads today."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

from levit_bench.store.schema import TABLES


def upgraded(record: dict) -> dict:
    """A measurement as this version records one: rows stored before load watching read as not
    flagged, load unknown; before --cores and --streams, as what they ran on (one core on the
    paper's CPU platforms, none held on the GPU) and one stream."""
    legacy = {"noisy": False, "load": {}}
    if "streams" not in record:
        legacy |= {"cores": 1 if record.get("platform") in ("xeon", "arm") else None, "streams": 1}
    return {**legacy, **record}


def measurement(text: str) -> dict:
    """A stored measurement, read as this version records one (`upgraded`)."""
    return upgraded(json.loads(text))


def parse_row(source: str, table: str, number: int, text: object) -> tuple[dict, str]:
    """(record, its JSON) of a row another store holds, or a ValueError saying what is wrong."""
    try:
        record = json.loads(text)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{source}: row {number} of {table} is not JSON ({e})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{source}: row {number} of {table} is not a record")
    if table == "measurements":
        record = upgraded(record)  # a store of an older schema: its columns as this one's
    problem = record_problem(table, record)
    if problem:
        raise ValueError(f"{source}: row {number} of {table} {problem}")
    return record, text


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive(value: object) -> bool:
    return _is_number(value) and value > 0


def _non_negative(value: object) -> bool:
    return _is_number(value) and value >= 0


_KINDS = {"TEXT": ("text", lambda v: isinstance(v, str)),
          "INTEGER": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
          # any number: a failed row may hold an infinite max_abs_diff (the logits it refused)
          "REAL": ("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool))}
# What every reader (results, aggregate, compare, report) takes from a row beyond its columns.
_OK_MEASUREMENT = {"images_per_s": ("a positive number", _positive), "median_ms": ("a positive number", _positive),
                   "cv": ("a number >= 0", _non_negative), "batch": ("a positive integer", lambda v: _KINDS[
                       "INTEGER"][1](v) and v >= 1)}
_PROFILE = {"kernels_ms": ("a number >= 0", _non_negative), "total_ms": ("a number >= 0", _non_negative),
            "median_ms": ("a positive number", _positive)}


def record_problem(table: str, record: Mapping) -> str | None:
    """What makes `record` unfit for `table` (`lacks median_ms`, `has images_per_s 'fast', not a
    positive number`), or None: the shape every reader of the store relies on, checked before a
    row from elsewhere is let in."""
    columns = {name: _KINDS[kind.split()[0]] for name, kind in TABLES[table].items()}
    needed = {name: kind for name, kind in columns.items() if "NOT NULL" in TABLES[table][name]}
    if table == "measurements" and record.get("status") == "ok":
        needed |= _OK_MEASUREMENT
    elif table == "profiles":
        needed |= _PROFILE
    missing = [name for name in needed if record.get(name) is None]
    if missing:
        return f"lacks {', '.join(missing)}"
    for name, (what, valid) in {**columns, **needed}.items():
        value = record.get(name)
        if value is not None and not valid(value):
            return f"has {name} {value!r}, not {what}"
    samples = record.get("samples_ms")
    if table == "measurements" and samples is not None and not (
            isinstance(samples, list) and samples and all(_positive(x) for x in samples)):
        return "has samples_ms that are not a list of positive numbers"
    components = record.get("components")
    if table == "profiles" and not (isinstance(components, list) and all(
            isinstance(c, dict) and isinstance(c.get("name"), str) and _non_negative(c.get("ms")) for c in components)):
        return "has components that are not a list of {name, ms}"
    return None
