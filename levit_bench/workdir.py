"""Where artifacts go, and how they are written (atomically: old file or new, never half)."""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from levit_bench.errors import LevitBenchError

DEFAULT_WORKDIR = "levit-bench-out"
STALE_PART_S = 600.0  # an export writes its files within seconds; a part this old is a killed writer's


def resolve_workdir(explicit: str | os.PathLike | None = None) -> Path:
    """--workdir, else $LEVIT_BENCH_HOME, else ./levit-bench-out (not created here)."""
    return Path(explicit or os.environ.get("LEVIT_BENCH_HOME") or DEFAULT_WORKDIR).expanduser()


def cache_dir() -> Path:
    """$LEVIT_BENCH_CACHE, else $XDG_CACHE_HOME/levit-bench (~/.cache/levit-bench)."""
    if os.environ.get("LEVIT_BENCH_CACHE"):
        return Path(os.environ["LEVIT_BENCH_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "levit-bench"


def ensure_writable_dir(path: Path) -> Path:
    """Create `path` if needed and prove a file can be written in it, before any long work."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise LevitBenchError(f"cannot write to output directory {path}: {e.strerror or e}") from None
    return path


def _file_mode() -> int:
    """0666 less the umask (0644 usually): what open() would give, not mkstemp's private 0600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target`, else vanishes."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.fchmod(fd, _file_mode())
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(target: Path, data: bytes) -> None:
    try:
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
    except OSError as e:  # a full disk, a read-only directory: the old file (if any) is untouched
        raise LevitBenchError(f"cannot write {target}: {e.strerror or e}") from None


def remove_stale_parts(directory: Path, name: str, older_than_s: float = STALE_PART_S) -> list[Path]:
    """Remove the temporary files that a killed writer of `directory/name` left behind.

    Only parts older than `older_than_s` go: a younger one may belong to a writer still at work.
    """
    removed = []
    cutoff = time.time() - older_than_s
    for part in directory.glob(f".{glob.escape(name)}.*.part"):
        with contextlib.suppress(OSError):
            if part.stat().st_mtime < cutoff:
                part.unlink()
                removed.append(part)
    return removed
