"""The results store, between the records runners return and the reports that read them: an
SQLite file by default (`<workdir>/results.db`) or a PostgreSQL database a team shares
(`--store URL`, `$LEVIT_BENCH_STORE`)."""

from __future__ import annotations

from pathlib import Path

from levit_bench.store.database import ResultsStore, read_rows
from levit_bench.store.location import DB_NAME, ENVIRONMENT, StoreError, StoreLocation, default_location, locate
from levit_bench.store.schema import COLUMNS, SCHEMA_VERSION, TABLES
from levit_bench.store.unsaved import keep_unsaved, save_record
from levit_bench.store.validation import record_problem, upgraded

__all__ = ["COLUMNS", "DB_NAME", "ENVIRONMENT", "SCHEMA_VERSION", "TABLES", "ResultsStore", "StoreError",
           "StoreLocation", "default_location", "keep_unsaved", "locate", "open_store", "read_rows",
           "record_problem", "save_record", "upgraded"]


def open_store(workdir: Path) -> ResultsStore:
    """The work directory's SQLite store, created if missing (for commands that write)."""
    return ResultsStore(Path(workdir) / DB_NAME)
