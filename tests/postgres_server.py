"""A throwaway PostgreSQL server for tests: Debian's binaries, a data directory of its own in
/tmp, a unix socket only (no TCP port at all), never the system service. PostgreSQL refuses to
run as root: as root, the server runs as the `postgres` user on a directory that user owns."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed: apt-get install postgresql (make test does)")
    return found[-1]


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """A started server; yields the libpq URL of its `postgres` database over the unix socket."""
    directory = Path(tempfile.mkdtemp(prefix="levit-bench-pg-"))
    data = directory / "data"
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    run = dict(check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    try:
        subprocess.run(_as_server_user([_binary("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                                        "--no-sync"]), **run)
        options = f"-c listen_addresses='' -k {directory} -c fsync=off -c max_connections=50"
        subprocess.run(_as_server_user([_binary("pg_ctl"), "-D", str(data), "-o", options, "-l",
                                        str(directory / "server.log"), "-w", "-t", "60", "start"]), **run)
        try:
            yield f"postgresql://postgres@/postgres?host={directory}"
        finally:
            subprocess.run(_as_server_user([_binary("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                           capture_output=True, stdin=subprocess.DEVNULL)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def new_database(server_url: str, name: str) -> str:
    """A fresh, empty database on the server; its URL."""
    import psycopg

    base, query = server_url.split("?", 1)
    with psycopg.connect(base.replace("postgresql://", "postgresql://", 1) + "?" + query, autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}"')
        db.execute(f'CREATE DATABASE "{name}"')
    return f"{base.rsplit('/', 1)[0]}/{name}?{query}"
