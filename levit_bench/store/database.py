"""The results store on SQLAlchemy Core: an SQLite file (the default, `<workdir>/results.db`) or a
PostgreSQL database a team shares, with one schema (`schema.py`).

Every row carries a `uid`, and every write is `INSERT ... ON CONFLICT (uid) DO NOTHING`: a cell
retried after a crash, a merge run twice, two hosts storing the same record never make a
second row. One short transaction per record, so a killed process loses nothing it committed.
SQLite takes many writers through its WAL journal, `BEGIN IMMEDIATE` and retries with back-off
while another holds the lock; PostgreSQL through its own row locking.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

from sqlalchemy import Connection, Engine, RootTransaction, and_, create_engine, event, func, inspect, select, text, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from levit_bench.store import schema
from levit_bench.store.location import StoreError, StoreLocation, locate
from levit_bench.store.schema import FILTERS, RESUME_KEY, SCHEMA_VERSION, TABLES
from levit_bench.store.validation import measurement, parse_row, upgraded

# One creator of the schema at a time on a server: CREATE TABLE IF NOT EXISTS from two hosts at
# once can still collide in PostgreSQL's catalogue. The key is arbitrary, the same everywhere.
_SCHEMA_LOCK = 0x1E517BE4C
_WRITING = "levit_bench_writing"  # a connection's info key: its transaction writes


class ResultsStore:
    """The store at `where` (a path, `sqlite:///PATH` or `postgresql://...`). With `create=False`
    (what reading commands use) a store that does not exist yet reads as empty and is not
    created: looking at results never leaves a file or a table behind."""

    def __init__(self, where, retries: int = 20, create: bool = True):
        self.location = locate(where)
        self.path = self.location.path
        self.retries = retries
        self._engine: Engine | None = None
        self.absent = not create and not self._exists()  # reads as empty; nothing created
        if self.absent:
            return
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create {self.path.parent}: {e.strerror}") from None
        with self._transaction() as db:
            self._create_schema(db)

    # ---- connections ---------------------------------------------------------------------------

    def _engine_now(self) -> Engine:
        if self._engine is None:
            self._engine = _make_engine(self.location)
        return self._engine

    def _exists(self) -> bool:
        if self.path is not None:
            return self.path.exists()
        with self._connection() as db:
            return inspect(db).has_table("meta")

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        try:
            with self._engine_now().connect() as db:
                yield db
        except SQLAlchemyError as e:
            raise self._error(e) from None

    @contextmanager
    def _reading(self) -> Iterator[Connection | None]:
        """A connection to read from, or None where the store did not exist when opened (it reads as empty)."""
        if self.absent:
            yield None
            return
        with self._connection() as db:
            yield db

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """One transaction, begun with jittered back-off while another SQLite writer holds the lock."""
        db, transaction = self._begin()
        try:
            yield db
            transaction.commit()
        except SQLAlchemyError as e:
            with suppress(SQLAlchemyError):
                transaction.rollback()
            raise self._error(e) from None
        except BaseException:
            with suppress(SQLAlchemyError):
                transaction.rollback()
            raise
        finally:
            db.close()

    def _begin(self) -> tuple[Connection, RootTransaction]:
        for attempt in range(self.retries):
            try:
                db = self._engine_now().connect()
            except SQLAlchemyError as e:
                raise self._error(e) from None
            db.info[_WRITING] = True  # SQLite: this transaction takes the write lock as it begins
            try:
                return db, db.begin()
            except DBAPIError as e:
                db.close()
                if self.path is None or not _locked(e):
                    raise self._error(e) from None
            time.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.5))
        raise StoreError(f"results store {self.location} stayed locked after {self.retries} attempts")

    def _error(self, error: SQLAlchemyError) -> StoreError:
        reason = _first_line(getattr(error, "orig", None) or error)
        if self.path is None:
            if isinstance(error, DBAPIError) and error.connection_invalidated or "connect" in reason.lower():
                return StoreError(f"cannot reach the results store {self.location}: {reason}")
            return StoreError(f"results store {self.location}: {reason}")
        if _locked(error):
            return StoreError(f"results store {self.location} stayed locked after {self.retries} attempts")
        return StoreError(f"results store {self.location} cannot be used ({reason}); move it aside to start a new one")

    # ---- schema --------------------------------------------------------------------------------

    def _create_schema(self, db: Connection) -> None:
        if self.path is None:
            db.execute(select(func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
        schema.metadata.create_all(db, checkfirst=True)
        version = db.execute(select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")).scalar()
        if version is None:
            db.execute(schema.meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
        elif not str(version).isdigit():
            raise StoreError(f"{self.location} has an unreadable schema version {version!r}")
        elif int(version) > SCHEMA_VERSION:
            raise StoreError(f"{self.location} has schema {version}, newer than this levit-bench's {SCHEMA_VERSION}; "
                             "upgrade")
        elif int(version) < SCHEMA_VERSION:
            _upgrade(db)

    # ---- writing -------------------------------------------------------------------------------

    def insert(self, record: Mapping, table: str = "measurements") -> bool:
        """Store `record`; False when a row of its uid was there already (nothing written)."""
        with self._transaction() as db:
            return self._insert(db, table, record, json.dumps(record, sort_keys=True))

    def _insert(self, db: Connection, table: str, record: Mapping, record_json: str) -> bool:
        values = {name: record.get(name) for name in TABLES[table]} | {"record_json": record_json}
        rows = schema.tables[table]
        if self.path is not None:  # SQLite's rowcount is exact (and RETURNING needs SQLite 3.35)
            statement = sqlite.insert(rows).values(values).on_conflict_do_nothing(index_elements=["uid"])
            return db.execute(statement).rowcount == 1
        # through SQLAlchemy, psycopg reports no rowcount for it: a row back says it was written
        statement = postgresql.insert(rows).values(values).on_conflict_do_nothing(index_elements=["uid"])
        return db.execute(statement.returning(rows.c.id)).first() is not None

    def insert_or_keep(self, record: Mapping, table: str = "measurements") -> None:
        """Insert; if the store cannot take it, keep the record as JSON and say where."""
        from levit_bench.store.unsaved import keep_unsaved

        try:
            self.insert(record, table)
        except StoreError as e:
            raise keep_unsaved(self.location, record, e) from None

    def insert_rows(self, rows: Mapping[str, list[tuple[dict, str]]]) -> tuple[int, int]:
        """Insert `read_rows`' rows that this store lacks, in one transaction; (imported, already here)."""
        imported = total = 0
        with self._transaction() as db:
            for table in TABLES:
                for record, record_json in rows.get(table, ()):
                    imported += self._insert(db, table, record, record_json)
                    total += 1
        return imported, total - imported

    def merge(self, other) -> tuple[int, int]:
        """Import every row of another store that this one lacks; (imported, already here).

        All or nothing: a row that is not a readable record refuses the whole merge.
        """
        return self.insert_rows(read_rows(other))

    def check(self) -> None:
        """Raise now, not after a measurement, if this store cannot take a record: an existing
        store must be a readable one (every table is read through: a truncated or garbage SQLite
        file fails here, as does a server that cannot be reached), a missing SQLite file needs a
        folder it can be created in."""
        if self.path is not None and not self.path.exists():
            existing = next(p for p in (self.path.parent, *self.path.parent.parents) if p.exists())
            if not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
                raise StoreError(f"cannot create the results store {self.path}: {existing} is not a writable folder")
            return
        with self._reading() as db:
            if db is not None:
                for table in schema.tables.values():
                    db.execute(select(func.count(), func.max(func.length(table.c.record_json)))).one()

    # ---- reading -------------------------------------------------------------------------------

    def _rows(self, table: str, where=None, *, parse=json.loads) -> list[dict]:
        """`table`'s records where `where` holds, oldest first."""
        columns = schema.tables[table].c
        query = select(columns.record_json).order_by(columns.created_at, columns.id)
        if where is not None:
            query = query.where(where)
        with self._reading() as db:
            found = [] if db is None else db.execute(query).scalars().all()
        return [parse(row) for row in found]

    def insert_accuracy(self, record: Mapping) -> None:
        self.insert(record, table="accuracy")

    def insert_profile(self, record: Mapping) -> None:
        self.insert(record, table="profiles")

    def accuracy_records(self, model: str | None = None) -> list[dict]:
        return self._model_rows("accuracy", model)

    def capacity_records(self, model: str | None = None) -> list[dict]:
        return self._model_rows("capacities", model)

    def profile_records(self, model: str | None = None) -> list[dict]:
        return self._model_rows("profiles", model)

    def _model_rows(self, table: str, model: str | None) -> list[dict]:
        """A table's records (of `model`, or all), oldest first."""
        return self._rows(table, None if model is None else schema.tables[table].c.model == model)

    def records(self, **filters) -> list[dict]:
        """Stored records, oldest first, where every given filter column equals its value."""
        unknown = set(filters) - set(FILTERS)
        if unknown:
            raise StoreError(f"cannot filter on {', '.join(sorted(unknown))}")
        columns = schema.tables["measurements"].c
        clauses = [columns[name] == value for name, value in filters.items() if value is not None]
        return self._rows("measurements", _all(clauses), parse=measurement)

    def _cell_where(self, key: Mapping):
        """A cell's successful rows: same artifact, runtime version, protocol and host. A `batch`
        of None matches any batch: the GPU's batch is searched, and the row holds the one found."""
        columns = schema.tables["measurements"].c
        names = [k for k in RESUME_KEY if not (k == "batch" and key.get(k) is None)]
        return _all([columns.status == "ok", *(columns[name].is_not_distinct_from(key.get(name)) for name in names)])

    def count_ok(self, key: Mapping) -> int:
        """How many successful rows (rounds) this cell has."""
        query = select(func.count()).select_from(schema.tables["measurements"]).where(self._cell_where(key))
        with self._reading() as db:
            return 0 if db is None else int(db.execute(query).scalar())

    def ok_records(self, key: Mapping) -> list[dict]:
        """This cell's successful records (its rounds), oldest first."""
        return self._rows("measurements", self._cell_where(key), parse=measurement)

    def has_ok(self, key: Mapping) -> bool:
        return self.count_ok(key) > 0


def read_rows(other) -> dict[str, list[tuple[dict, str]]]:
    """Every row of another store, per table, as (record, its JSON), each checked as the readers
    need it: a StoreError naming the first that is not, before anything is written anywhere."""
    location = locate(other)
    if location.path is not None and not location.path.is_file():
        raise StoreError(f"no results store at {location}")
    engine = _make_engine(location, read_only=True)
    try:
        with engine.connect() as db:
            present = set(inspect(db).get_table_names())
            if "meta" not in present:
                raise StoreError(f"{location} is not a levit-bench results store (no meta table); nothing merged")
            version = db.execute(select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")).scalar()
            # a store from before a table was added has none of its rows
            texts = {table: db.execute(select(schema.tables[table].c.record_json)).scalars().all()
                     if table in present else [] for table in TABLES}
    except SQLAlchemyError as e:
        raise StoreError(f"{location} is not a levit-bench results store it can read: "
                         f"{_first_line(getattr(e, 'orig', None) or e)}") from None
    finally:
        engine.dispose()
    if version is None or not str(version).isdigit() or int(version) > SCHEMA_VERSION:
        raise StoreError(f"{location} has an unknown schema version {version!r}; nothing merged")
    try:
        return {table: [parse_row(str(location), table, i, text) for i, text in enumerate(texts[table], 1)]
                for table in TABLES}
    except ValueError as e:
        raise StoreError(f"{e}; nothing merged") from None


def _upgrade(db: Connection) -> None:
    """Bring an older store's tables to this schema in place (inside the opening transaction):
    the columns it lacks, added and filled from each row's record as `upgraded` reads it."""
    for name, table in schema.tables.items():
        present = {column["name"] for column in inspect(db).get_columns(name)}
        added = [column for column in table.columns if column.name not in present]
        for column in added:
            kind = column.type.compile(dialect=db.dialect)
            db.execute(text(f"ALTER TABLE {name} ADD COLUMN {column.name} {kind}"))
        if added and name == "measurements":
            for row_id, record_json in db.execute(select(table.c.id, table.c.record_json)).all():
                record = upgraded(json.loads(record_json))
                db.execute(table.update().where(table.c.id == row_id)
                           .values({column.name: record.get(column.name) for column in added}))
    db.execute(schema.meta.update().where(schema.meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))


def _make_engine(location: StoreLocation, read_only: bool = False) -> Engine:
    """SQLite in WAL mode, a connection per transaction (opening a file costs little), whose
    writers take the write lock at BEGIN; or PostgreSQL through psycopg 3 with a small pool: a
    server connection per insert stored 178 records/s, a pooled one 710 (benchmarks/fleet.py)."""
    if location.path is None:
        try:
            return create_engine(location.url, pool_size=1, max_overflow=4, pool_pre_ping=True,
                                 connect_args={"connect_timeout": 10})
        except ImportError:
            raise StoreError(f"a PostgreSQL store ({location}) needs psycopg: "
                             "pip install 'levit-bench[postgresql]'") from None
    if read_only:
        return _read_only_sqlite(location.path)
    path = str(location.path)  # the file itself: a '?' or '%' in its name is part of the name, not a URL's
    engine = create_engine("sqlite://", poolclass=NullPool, creator=lambda: sqlite3.connect(path, timeout=30))

    @event.listens_for(engine, "connect")
    def _on_connect(connection, _record) -> None:
        connection.isolation_level = None  # transactions are ours (BEGIN below), not pysqlite's
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        # a writer takes the lock at once (so a busy store is retried before any work); a reader
        # never waits for writers under WAL
        connection.exec_driver_sql("BEGIN IMMEDIATE" if connection.info.get(_WRITING) else "BEGIN")

    return engine


def _read_only_sqlite(path: Path) -> Engine:
    """Another machine's SQLite file, read by URI (so '#' or '?' in its name stay in the name).
    Without a -wal file (no writer holds it open, none crashed) every row is in the file itself:
    read it as immutable, so SQLite leaves no -shm or -wal beside it."""
    flags = "mode=ro" if path.with_name(f"{path.name}-wal").exists() else "mode=ro&immutable=1"
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?{flags}"
    return create_engine("sqlite://", poolclass=NullPool, creator=lambda: sqlite3.connect(uri, uri=True))


def _all(clauses: list):
    return and_(true(), *clauses)


def _locked(error: BaseException) -> bool:
    reason = str(getattr(error, "orig", None) or error)
    return "locked" in reason or "busy" in reason


def _first_line(error: object) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
