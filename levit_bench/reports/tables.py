"""Stored records as pandas tables and CSV."""

from __future__ import annotations

import json
from pathlib import Path

from levit_bench.errors import LevitBenchError
from levit_bench.workdir import atomic_path

# Nested fields that go into the CSV as JSON text rather than exploding into columns.
_AS_JSON = ("samples_ms", "pinned_cores", "host_info", "versions", "protocol_params", "runtime_info", "weights")


def records_frame(records: list[dict]):
    import pandas as pd

    rows = [{k: (json.dumps(v, sort_keys=True) if k in _AS_JSON else v) for k, v in r.items()} for r in records]
    return pd.DataFrame(rows)


def write_csv(records: list[dict], path: Path) -> None:
    try:
        with atomic_path(path) as tmp:
            records_frame(records).to_csv(tmp, index=False)
    except OSError as e:
        raise LevitBenchError(f"cannot write {path}: {e.strerror or e}") from None
