"""A finished measurement is never lost to a store that cannot take it: it is kept as JSON."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path

from levit_bench.errors import LevitBenchError
from levit_bench.store.location import StoreError, StoreLocation, locate
from levit_bench.workdir import write_atomic


def keep_unsaved(where, record: Mapping, error: StoreError) -> StoreError:
    """Keep a record the store `where` could not take as JSON beside its file (a server's, or when
    that folder cannot take it either, a full disk say: in the temporary directory); the error to
    raise, saying where it is."""
    location = locate(where)
    stem = location.path.name if location.path is not None else "results-store"
    name = f"{stem}.unsaved-{record.get('uid', 'record')}.json"
    text = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
    places = [location.path.with_name(name)] if location.path is not None else []
    places.append(Path(tempfile.gettempdir()) / name)
    failures = []
    for kept in places:
        try:
            write_atomic(kept, text)
        except LevitBenchError as write_error:
            failures.append(str(write_error))
            continue
        return StoreError(f"{error}; the record is kept in {kept}")
    return StoreError(f"{error}; the record could not be kept either: {'; '.join(failures)}")


def save_record(where: StoreLocation | str | Path, record: Mapping, table: str = "measurements") -> None:
    """Store one record in the store `where`, or keep it as JSON and say where."""
    from levit_bench.store.database import ResultsStore

    try:
        store = ResultsStore(where)
    except StoreError as e:
        raise keep_unsaved(where, record, e) from None
    store.insert_or_keep(record, table)
