"""The results store: SQLite at `<workdir>/results.db`, one row per measurement.

Safe for several writers: WAL journal, a busy timeout and retries, one short transaction per
row (a killed process loses nothing already committed). Every row carries a `uid`, so merging
another machine's store never duplicates a row. The schema is versioned in `meta`.
"""

from __future__ import annotations

import json
import math
import os
import random
import sqlite3
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

from levit_bench.errors import LevitBenchError
from levit_bench.records import CELL_KEY
from levit_bench.workdir import write_atomic

SCHEMA_VERSION = 2  # 2: measurements carry cores, streams and their LoadGen scenario
DB_NAME = "results.db"

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

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    *(f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, "
      + ", ".join(f"{name} {kind}" for name, kind in columns.items())
      + ", record_json TEXT NOT NULL)" for table, columns in TABLES.items()),
    "CREATE INDEX IF NOT EXISTS measurements_cell ON measurements "
    "(model, runtime, platform, batch, status)",
]
FILTERS = ("model", "runtime", "platform", "status", "host", "run_id", "precision")
RESUME_KEY = CELL_KEY  # a finished cell is found again by what makes it the same cell


class StoreError(LevitBenchError):
    pass


class ResultsStore:
    """The store at `path`. With `create=False` (what reading commands use) a missing store reads
    as empty and is not created: looking at results never leaves a file behind."""

    def __init__(self, path: Path, retries: int = 20, create: bool = True):
        self.path = Path(path)
        self.retries = retries
        if not create and not self.path.exists():
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create {self.path.parent}: {e.strerror}") from None
        with self._transaction() as db:
            for statement in _SCHEMA:
                db.execute(statement)
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif not str(row[0]).isdigit():
                raise StoreError(f"{self.path} has an unreadable schema version {row[0]!r}")
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema {row[0]}, newer than this levit-bench's {SCHEMA_VERSION}; upgrade"
                )
            else:
                _upgrade(db)

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        db = self._connect() if self.path.exists() else _empty_database()
        try:
            yield db
        except sqlite3.DatabaseError as e:
            raise _damaged(self.path, e) from None
        finally:
            db.close()

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot open results store {self.path}: {e}") from None
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, retried with jittered back-off while another writer holds the lock."""
        for attempt in range(self.retries):
            db = self._connect()
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as e:
                db.close()
                if "locked" not in str(e) and "busy" not in str(e):
                    raise _damaged(self.path, e) from None
                time.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.5))
                continue
            try:
                yield db
                db.execute("COMMIT")
                return
            except sqlite3.DatabaseError as e:  # a malformed page, found while working
                with suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise _damaged(self.path, e) from None
            except BaseException:
                with suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
            finally:
                db.close()
        raise StoreError(f"results store {self.path} stayed locked after {self.retries} attempts")

    def insert(self, record: Mapping, table: str = "measurements") -> None:
        columns = TABLES[table]
        with self._transaction() as db:
            db.execute(
                f"INSERT INTO {table} ({', '.join(columns)}, record_json) "
                f"VALUES ({', '.join('?' * (len(columns) + 1))})",
                [*(record.get(name) for name in columns), json.dumps(record, sort_keys=True)],
            )

    def insert_or_keep(self, record: Mapping, table: str = "measurements") -> None:
        """Insert; if the store cannot take it, keep the record as JSON beside it and say where."""
        try:
            self.insert(record, table)
        except StoreError as e:
            raise keep_unsaved(self.path, record, e) from None

    def check(self) -> None:
        """Raise now, not after a measurement, if this store cannot take a record: an existing
        store must be a readable one (every table's pages are walked: a truncated or garbage
        file fails here), a missing one needs a folder it can be created in."""
        if not self.path.exists():
            existing = next(p for p in (self.path.parent, *self.path.parent.parents) if p.exists())
            if not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
                raise StoreError(f"cannot create the results store {self.path}: {existing} is not a writable folder")
            return
        with self._reading() as db:
            for table in TABLES:
                db.execute(f"SELECT COUNT(*), MAX(LENGTH(record_json)) FROM {table}").fetchone()

    def insert_accuracy(self, record: Mapping) -> None:
        self.insert(record, table="accuracy")

    def accuracy_records(self, model: str | None = None) -> list[dict]:
        return self._model_rows("accuracy", model)

    def insert_profile(self, record: Mapping) -> None:
        self.insert(record, table="profiles")

    def capacity_records(self, model: str | None = None) -> list[dict]:
        return self._model_rows("capacities", model)

    def profile_records(self, model: str | None = None) -> list[dict]:
        return self._model_rows("profiles", model)

    def _model_rows(self, table: str, model: str | None) -> list[dict]:
        """A table's records (of `model`, or all), oldest first."""
        with self._reading() as db:
            rows = db.execute(f"SELECT record_json FROM {table} WHERE ? IS NULL OR model = ? ORDER BY created_at, id",
                              (model, model)).fetchall()
        return [json.loads(row[0]) for row in rows]

    def records(self, **filters) -> list[dict]:
        """Stored records, oldest first, where every given filter column equals its value."""
        unknown = set(filters) - set(FILTERS)
        if unknown:
            raise StoreError(f"cannot filter on {', '.join(sorted(unknown))}")
        clauses = [(k, v) for k, v in filters.items() if v is not None]
        where = " AND ".join(f"{k} = ?" for k, _ in clauses) or "1"
        with self._reading() as db:
            rows = db.execute(
                f"SELECT record_json FROM measurements WHERE {where} ORDER BY created_at, id",
                [v for _, v in clauses],
            ).fetchall()
        return [_measurement(row[0]) for row in rows]

    def _cell_where(self, key: Mapping) -> tuple[str, list]:
        """The WHERE clause (and its values) of a cell's successful rows: same artifact, runtime
        version, protocol and host. A `batch` of None matches any batch: the GPU's batch is
        searched, and the row holds the one found."""
        columns = [k for k in RESUME_KEY if not (k == "batch" and key.get(k) is None)]
        where = " AND ".join(f"{k} IS ?" for k in columns)
        return f"status = 'ok' AND {where}", [key.get(k) for k in columns]

    def count_ok(self, key: Mapping) -> int:
        """How many successful rows (rounds) this cell has."""
        where, values = self._cell_where(key)
        with self._reading() as db:
            row = db.execute(f"SELECT COUNT(*) FROM measurements WHERE {where}", values).fetchone()
        return int(row[0])

    def ok_records(self, key: Mapping) -> list[dict]:
        """This cell's successful records (its rounds), oldest first."""
        where, values = self._cell_where(key)
        with self._reading() as db:
            rows = db.execute(f"SELECT record_json FROM measurements WHERE {where} ORDER BY created_at, id",
                              values).fetchall()
        return [_measurement(row[0]) for row in rows]

    def has_ok(self, key: Mapping) -> bool:
        return self.count_ok(key) > 0

    def merge(self, other: Path) -> tuple[int, int]:
        """Import every row of another store that this one lacks; (imported, already here).

        All or nothing: a row that is not a readable record refuses the whole merge.
        """
        return self.insert_rows(read_rows(other))

    def insert_rows(self, rows: Mapping[str, list[tuple[dict, str]]]) -> tuple[int, int]:
        """Insert `read_rows`' rows that this store lacks, in one transaction; (imported, already here)."""
        imported = total = 0
        with self._transaction() as db:
            for table, columns in TABLES.items():
                for record, text in rows.get(table, ()):
                    cursor = db.execute(
                        f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}, record_json) "
                        f"VALUES ({', '.join('?' * (len(columns) + 1))})",
                        [*(record.get(name) for name in columns), text],
                    )
                    imported += cursor.rowcount
                    total += 1
        return imported, total - imported


def read_rows(other: Path) -> dict[str, list[tuple[dict, str]]]:
    """Every row of another store, per table, as (record, its JSON), each checked as the readers
    need it: a StoreError naming the first that is not, before anything is written anywhere."""
    other = Path(other)
    if not other.is_file():
        raise StoreError(f"no results store at {other}")
    # by URI, read-only: the path is quoted, so '#' or '?' in a name stay in the name. Without a
    # -wal file (no writer holds it open, none crashed), every row is in the file itself: read
    # it as immutable, so SQLite leaves no -shm or -wal beside another machine's store
    flags = "mode=ro" if other.with_name(f"{other.name}-wal").exists() else "mode=ro&immutable=1"
    try:
        source = sqlite3.connect(f"file:{urllib.parse.quote(str(other.resolve()))}?{flags}", uri=True)
        try:
            version = source.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            present = {row[0] for row in source.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            rows = {table: source.execute(f"SELECT record_json FROM {table}").fetchall() if table in present else []
                    for table in TABLES}  # a store from before a table was added has none of its rows
        finally:
            source.close()
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{other} is not a levit-bench results store: {e}") from None
    if version is None or not str(version[0]).isdigit() or int(version[0]) > SCHEMA_VERSION:
        raise StoreError(f"{other} has an unknown schema version {version and version[0]!r}; nothing merged")
    return {table: [_parse_row(other, table, i, text) for i, (text,) in enumerate(rows[table], 1)]
            for table in TABLES}


def _upgrade(db: sqlite3.Connection) -> None:
    """Bring an older store's tables to this schema in place (inside the opening transaction):
    the columns it lacks, filled from each row's record as `upgraded` reads it (nothing to do,
    and nothing written, for a store of this schema)."""
    for table, columns in TABLES.items():
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        added = [name for name in columns if name not in present]
        for name in added:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {columns[name]}")
        if added and table == "measurements":
            for row_id, text in db.execute(f"SELECT id, record_json FROM {table}").fetchall():
                record = upgraded(json.loads(text))
                db.execute(f"UPDATE {table} SET {', '.join(f'{n} = ?' for n in added)} WHERE id = ?",
                           [*(record.get(n) for n in added), row_id])
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version' AND value != ?",
               (str(SCHEMA_VERSION), str(SCHEMA_VERSION)))


def upgraded(record: dict) -> dict:
    """A measurement as this version records one: rows stored before load watching read as not
    flagged, load unknown; before --cores and --streams, as what they ran on (one core on the
    paper's CPU platforms, none held on the GPU) and one stream."""
    legacy = {"noisy": False, "load": {}}
    if "streams" not in record:
        legacy |= {"cores": 1 if record.get("platform") in ("xeon", "arm") else None, "streams": 1}
    return {**legacy, **record}


def _measurement(text: str) -> dict:
    """A stored measurement, read as this version records one (`upgraded`)."""
    return upgraded(json.loads(text))


def _parse_row(store: Path, table: str, number: int, text: object) -> tuple[dict, str]:
    """(record, its JSON) of a row another store holds, or a StoreError saying what is wrong."""
    try:
        record = json.loads(text)
    except (TypeError, ValueError) as e:
        raise StoreError(f"{store}: row {number} of {table} is not JSON ({e}); nothing merged") from None
    if not isinstance(record, dict):
        raise StoreError(f"{store}: row {number} of {table} is not a record; nothing merged")
    if table == "measurements":
        record = upgraded(record)  # a store of an older schema: its columns as this one's
    problem = record_problem(table, record)
    if problem:
        raise StoreError(f"{store}: row {number} of {table} {problem}; nothing merged")
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


def _damaged(path: Path, error: sqlite3.DatabaseError) -> StoreError:
    return StoreError(f"results store {path} cannot be used ({error}); move it aside to start a new one")


def _empty_database() -> sqlite3.Connection:
    """An in-memory store with the schema: what a store that does not exist yet reads as."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    for statement in _SCHEMA:
        db.execute(statement)
    return db


def keep_unsaved(path: Path, record: Mapping, error: StoreError) -> StoreError:
    """Keep a record the store at `path` could not take as JSON beside it (else, when that folder
    cannot take it either, a full disk say, in the temporary directory); the error to raise,
    saying where it is."""
    name = f"{path.name}.unsaved-{record.get('uid', 'record')}.json"
    text = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
    failures = []
    for kept in (path.with_name(name), Path(tempfile.gettempdir()) / name):
        try:
            write_atomic(kept, text)
        except LevitBenchError as write_error:
            failures.append(str(write_error))
            continue
        return StoreError(f"{error}; the record is kept in {kept}")
    return StoreError(f"{error}; the record could not be kept either: {'; '.join(failures)}")


def save_record(path: Path, record: Mapping, table: str = "measurements") -> None:
    """Store one record in the store at `path`, or keep it as JSON and say where: a finished
    measurement is never lost to a store that cannot be opened or written."""
    path = Path(path)
    try:
        store = ResultsStore(path)
    except StoreError as e:
        raise keep_unsaved(path, record, e) from None
    store.insert_or_keep(record, table)


def open_store(workdir: Path) -> ResultsStore:
    """The work directory's store, created if missing (for commands that write)."""
    return ResultsStore(Path(workdir) / DB_NAME)
