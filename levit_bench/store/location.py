"""Where a store is: an SQLite file (`sqlite:///PATH`, or a plain path) or a PostgreSQL database
(`postgresql://USER[:PASSWORD]@HOST[:PORT]/DB`, libpq's `?host=/socket/dir` included)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from levit_bench.errors import LevitBenchError

DB_NAME = "results.db"
ENVIRONMENT = "LEVIT_BENCH_STORE"  # the store every command uses when --store is not given
_POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")


class StoreError(LevitBenchError):
    pass


@dataclass(frozen=True)
class StoreLocation:
    url: str  # as SQLAlchemy takes it
    path: Path | None = None  # the SQLite file; None for a database server

    @property
    def kind(self) -> str:
        return "sqlite" if self.path is not None else "postgresql"

    def __str__(self) -> str:
        """What messages show: the file, or the URL with its password hidden."""
        if self.path is not None:
            return str(self.path)
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True).replace("postgresql+psycopg://",
                                                                               "postgresql://", 1)


def locate(where: str | os.PathLike | StoreLocation) -> StoreLocation:
    """The store `where` names; a scheme other than sqlite or postgresql is refused in one line."""
    if isinstance(where, StoreLocation):
        return where
    text = os.fspath(where)
    if text.startswith(_POSTGRES_SCHEMES):
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        url = "postgresql+psycopg://" + text.split("://", 1)[1]
        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError) as e:
            raise StoreError(f"not a PostgreSQL URL: {_hide_password(text)} ({e})") from None
        if not parsed.database:
            raise StoreError(f"{_hide_password(text)} names no database: postgresql://USER@HOST[:PORT]/DATABASE")
        return StoreLocation(url)
    if text.startswith("sqlite:///"):
        text = text.removeprefix("sqlite:///")  # sqlite:///relative/path, sqlite:////absolute/path
    elif "://" in text:
        raise StoreError(f"unknown store {_hide_password(text)}: give sqlite:///PATH, postgresql://USER@HOST/DB "
                         "or a file path")
    if not text:
        raise StoreError("sqlite:/// names no file: sqlite:///PATH")
    path = Path(text).expanduser().absolute()
    return StoreLocation(f"sqlite:///{path}", path)


def _hide_password(url: str) -> str:
    """`scheme://user:secret@host` as `scheme://user:***@host`."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def default_location(workdir: Path, store: str | os.PathLike | None = None) -> StoreLocation:
    """`store`, else $LEVIT_BENCH_STORE, else the work directory's results.db."""
    chosen = store if store is not None else os.environ.get(ENVIRONMENT) or None
    return locate(chosen) if chosen is not None else locate(Path(workdir) / DB_NAME)
