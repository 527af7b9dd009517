"""The store's one schema, for SQLite and PostgreSQL alike: a table per kind of record, each row a
record kept whole as JSON beside the scalar columns that filter and sort it, and its version in
`meta`.

Migrations are SQLAlchemy's own DDL, not Alembic: every change so far adds columns (schema 2
added `cores`, `streams`, `scenario`, `scenario_settings`; 3 `host_label`), which `database._upgrade` adds in
place and fills from each row's JSON, inside the transaction that opens the store. One version
number in the store and no migration scripts to ship keep a store readable by exactly the
versions that know its schema; Alembic would earn its place with a change that rewrites a table.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, MetaData, Table, Text

from levit_bench.records import CELL_KEY

SCHEMA_VERSION = 3  # 2: measurements carry cores, streams and their LoadGen scenario; 3: a fleet host's label

# Scalar columns, for filtering and sorting; the whole record is kept as JSON beside them.
COLUMNS = {
    "uid": "TEXT NOT NULL UNIQUE",
    "run_id": "TEXT NOT NULL",
    "created_at": "TEXT NOT NULL",
    "model": "TEXT NOT NULL",
    "runtime": "TEXT NOT NULL",
    "runtime_version": "TEXT",
    "mode": "TEXT",
    "platform": "TEXT NOT NULL",
    "precision": "TEXT",
    "batch": "INTEGER",
    "threads": "INTEGER",
    "cores": "INTEGER",
    "streams": "INTEGER",
    "scenario": "TEXT",
    "scenario_settings": "TEXT",
    "host": "TEXT NOT NULL",
    "host_label": "TEXT",  # the host's label in a fleet (`worker start --label`); None when measured alone
    "cpu_model": "TEXT",
    "artifact_sha256": "TEXT",
    "protocol": "TEXT",
    "status": "TEXT NOT NULL",
    "error": "TEXT",
    "images_per_s": "REAL",
    "median_ms": "REAL",
    "p90_ms": "REAL",
    "cv": "REAL",
    "max_abs_diff": "REAL",
}

# Top-1 measured by `levit-bench eval` for given weights (the report's `measured` accuracy).
ACCURACY_COLUMNS = {
    "uid": "TEXT NOT NULL UNIQUE",
    "created_at": "TEXT NOT NULL",
    "model": "TEXT NOT NULL",
    "weights_id": "TEXT NOT NULL",
    "runtime": "TEXT",
    "precision": "TEXT",
    "dataset": "TEXT",
    "top1": "REAL NOT NULL",
    "top5": "REAL",
    "images": "INTEGER",
    "host": "TEXT",
}
# Per-component profiles from `levit-bench profile` and `sweep --profile` (the report's stacked bars).
PROFILE_COLUMNS = {
    "uid": "TEXT NOT NULL UNIQUE",
    "created_at": "TEXT NOT NULL",
    "model": "TEXT NOT NULL",
    "runtime": "TEXT NOT NULL",
    "mode": "TEXT",
    "platform": "TEXT NOT NULL",
    "precision": "TEXT",
    "batch": "INTEGER",
    "host": "TEXT NOT NULL",
    "total_ms": "REAL",
    "median_ms": "REAL",
}
# One row per `levit-bench capacity` search (its probes are measurements rows, by uid).
CAPACITY_COLUMNS = {
    "uid": "TEXT NOT NULL UNIQUE",
    "run_id": "TEXT",
    "created_at": "TEXT NOT NULL",
    "model": "TEXT NOT NULL",
    "runtime": "TEXT NOT NULL",
    "mode": "TEXT",
    "platform": "TEXT",
    "precision": "TEXT",
    "batch": "INTEGER",
    "cores": "INTEGER",
    "streams": "INTEGER",
    "host": "TEXT",
    "latency_bound_ms": "REAL NOT NULL",
    "status": "TEXT NOT NULL",
    "error": "TEXT",
    "capacity_qps": "REAL",
    "offline_qps": "REAL",
}
TABLES = {"measurements": COLUMNS, "accuracy": ACCURACY_COLUMNS, "profiles": PROFILE_COLUMNS,
          "capacities": CAPACITY_COLUMNS}
FILTERS = ("model", "runtime", "platform", "status", "host", "host_label", "run_id", "precision")
RESUME_KEY = CELL_KEY  # a finished cell is found again by what makes it the same cell

_TYPES = {"TEXT": Text, "INTEGER": Integer, "REAL": Float}

metadata = MetaData()
meta = Table("meta", metadata, Column("key", Text, primary_key=True), Column("value", Text, nullable=False))


def _table(name: str, columns: dict[str, str]) -> Table:
    return Table(name, metadata, Column("id", Integer, primary_key=True, autoincrement=True),
                 *(column(column_name, kind) for column_name, kind in columns.items()),
                 Column("record_json", Text, nullable=False))


def column(name: str, kind: str) -> Column:
    """The column `name` declared as `kind` ("REAL", "TEXT NOT NULL UNIQUE", ...)."""
    return Column(name, _TYPES[kind.split()[0]](), nullable="NOT NULL" not in kind, unique="UNIQUE" in kind)


tables = {name: _table(name, columns) for name, columns in TABLES.items()}
Index("measurements_cell", *(tables["measurements"].c[name] for name in ("model", "runtime", "platform", "batch",
                                                                         "status")))
