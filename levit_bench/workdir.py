"""Where artifacts go, and how they are written (atomically: old file or new, never half)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from levit_bench.errors import LevitBenchError

DEFAULT_WORKDIR = "levit-bench-out"


def resolve_workdir(explicit: str | os.PathLike | None = None) -> Path:
    """--workdir, else $LEVIT_BENCH_HOME, else ./levit-bench-out (not created here)."""
    return Path(explicit or os.environ.get("LEVIT_BENCH_HOME") or DEFAULT_WORKDIR).expanduser()


def ensure_writable_dir(path: Path) -> Path:
    """Create `path` if needed and prove a file can be written in it, before any long work."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise LevitBenchError(f"cannot write to output directory {path}: {e.strerror or e}") from None
    return path


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target`, else vanishes."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
