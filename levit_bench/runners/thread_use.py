"""Which of this process's threads computed while a measurement ran: the runtime's thread count
seen from the kernel (each thread's CPU time in /proc/self/task), not taken from its settings.

A thread that ends inside the watch (a stream's, `measure.measure_streams`) is gone from
/proc before the watch reads it again: it calls `ending()` as it ends, leaving its CPU time."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BUSY_SHARE = 0.25  # a thread that ran for at least this share of the measurement computed in it


_ENDED: dict[str, float] = {}  # thread id -> its CPU seconds, left by threads as they end
_ENDED_LOCK = threading.Lock()


def _cpu_seconds(task: Path) -> float | None:
    """A thread's CPU seconds: the scheduler's nanoseconds (schedstat), else user + system time
    in clock ticks; None when it has ended."""
    try:
        return int((task / "schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def cpu_seconds_by_thread() -> dict[str, float]:
    """CPU seconds each thread of this process has run, by thread id, those that ended and left
    theirs (`ending`) included."""
    seconds = {}
    for task in Path("/proc/self/task").iterdir() if Path("/proc/self/task").is_dir() else ():
        if (spent := _cpu_seconds(task)) is not None:
            seconds[task.name] = spent
    with _ENDED_LOCK:
        return {**_ENDED, **seconds}


def ending() -> None:
    """Called by a thread as it ends: its CPU time stays countable after it is gone."""
    spent = _cpu_seconds(Path(f"/proc/self/task/{threading.get_native_id()}"))
    if spent is not None:
        with _ENDED_LOCK:
            _ENDED[str(threading.get_native_id())] = spent


@dataclass
class ThreadUse:
    busy: int | None = None  # threads that computed for at least BUSY_SHARE of the wall time
    parallelism: float | None = None  # CPU seconds of the whole process per wall second


@contextlib.contextmanager
def watch() -> Iterator[ThreadUse]:
    """While inside, watch every thread's CPU time; the yielded ThreadUse is filled in on the way out
    (left None where /proc is not there to read)."""
    use = ThreadUse()
    before, started = cpu_seconds_by_thread(), time.perf_counter()
    yield use
    after, wall = cpu_seconds_by_thread(), time.perf_counter() - started
    if not after or wall <= 0:
        return
    spent = [seconds - before.get(tid, 0.0) for tid, seconds in after.items()]
    use.busy = sum(1 for s in spent if s >= BUSY_SHARE * wall)
    use.parallelism = round(sum(spent) / wall, 2)
