"""One measurement per core at a time, across every process on the host.

A measurement holds an exclusive `flock` on one lock file per logical CPU of each physical
core it pins (SMT siblings share a core's execution units, so they go together). The kernel drops a
flock when its holder exits however it exits (even SIGKILL), so a crashed run never leaves a
core reserved. The lock files are host-wide (`$LEVIT_BENCH_LOCKS`, else
`/tmp/levit-bench-locks`), not per user cache: two users measuring on one host share its cores.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from levit_bench.errors import LevitBenchError
from levit_bench.platforms import Platform

DEFAULT_WAIT_TIMEOUT_S = 900.0
POLL_S = 0.2


class CoresBusy(LevitBenchError):
    pass


def lock_dir() -> Path:
    path = Path(os.environ.get("LEVIT_BENCH_LOCKS") or "/tmp/levit-bench-locks")
    try:
        path.mkdir(parents=True, exist_ok=True)
        if path.stat().st_uid == os.getuid():
            path.chmod(0o1777)  # shared by every user, like /tmp
    except OSError as e:
        raise LevitBenchError(f"cannot create the core lock directory {path}: {e.strerror or e}") from None
    return path


def holder(resource: str, directory: Path | None = None) -> str:
    """Who holds `resource` (as its holder wrote it), or 'unknown'."""
    try:
        return ((directory or lock_dir()) / f"{resource}.lock").read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def _try_lock(directory: Path, resource: str) -> int | None:
    """An fd holding `resource`'s lock, or None when another process holds it."""
    path = directory / f"{resource}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o666)  # whoever made it, every user's measurements take it
    except PermissionError:  # another user's file, made before that chmod: a flock needs no write access
        fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    with contextlib.suppress(OSError):  # who holds it, for those who wait (not writable: unnamed)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {' '.join(sys.argv)[:200]}\n".encode(), 0)
    return fd


def _release(fds: dict[str, int]) -> None:
    for fd in fds.values():
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the last fd drops the flock
    fds.clear()


@functools.lru_cache(maxsize=None)  # the topology does not change while a process runs
def physical_core(cpu: int) -> tuple[int, ...]:
    """The logical CPUs sharing `cpu`'s physical core (SMT siblings), `cpu` included."""
    try:
        text = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text()
    except OSError:
        return (cpu,)
    cpus = []
    for part in text.strip().split(","):
        low, _, high = part.partition("-")
        cpus.extend(range(int(low), int(high or low) + 1))
    return tuple(cpus) if cpu in cpus else (cpu,)


def _try_core(directory: Path, siblings: tuple[int, ...], held: dict[str, int]) -> str | None:
    """Lock every sibling of one physical core into `held`; None, or the first one busy."""
    taken = {}
    for cpu in siblings:
        fd = _try_lock(directory, f"cpu{cpu}")
        if fd is None:
            _release(taken)
            return f"cpu{cpu}"
        taken[f"cpu{cpu}"] = fd
    held.update(taken)
    return None


def usable_physical_cores() -> int:
    """How many physical cores this process may run on (its affinity, SMT siblings counted once)."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    return len({physical_core(cpu) for cpu in allowed})


@contextlib.contextmanager
def reserve(candidates: list[int], count: int, wait_timeout_s: float = DEFAULT_WAIT_TIMEOUT_S,
            on_wait: Callable[[str], None] = lambda message: None) -> Iterator[list[int]]:
    """Hold `count` physical cores among the `candidates` CPUs exclusively while inside; yield
    one CPU of each to pin to (the highest-numbered free ones first).

    A physical core is the unit: its SMT siblings share its execution units, so a measurement
    locks them all. While fewer than `count` are free, wait (telling `on_wait` for whom, again
    only when that changes), up to `wait_timeout_s`, then raise CoresBusy naming the holders.
    """
    cores = {}
    for cpu in sorted(candidates, reverse=True):
        cores.setdefault(physical_core(cpu), cpu)  # siblings -> the CPU to pin to
    if count > len(cores):
        raise LevitBenchError(f"{count} cores asked for, but this process may use only {len(cores)} "
                              f"(CPUs {candidates})")
    directory = lock_dir()
    wanted = "a free core" if count == 1 else f"{count} free cores"
    deadline = time.monotonic() + wait_timeout_s
    held: dict[str, int] = {}
    told = None
    try:
        while True:
            busy, chosen = [], []
            for siblings, cpu in cores.items():
                if len(chosen) == count:
                    break
                blocked = _try_core(directory, siblings, held)
                if blocked:
                    busy.append(blocked)
                else:
                    chosen.append(cpu)
            if len(chosen) == count:
                break
            _release(held)  # never sit on some cores while waiting for others
            whom = "; ".join(f"{r} held by {holder(r, directory)}" for r in busy)
            if time.monotonic() >= deadline:
                raise CoresBusy(f"no {wanted.removeprefix('a ')} after waiting {wait_timeout_s:g} s ({whom}); "
                                "raise --wait-timeout or stop the other measurement")
            if whom != told:
                on_wait(f"waiting for {wanted} ({whom})")
                told = whom
            time.sleep(POLL_S)
        yield sorted(chosen)
    finally:
        _release(held)


@contextlib.contextmanager
def pinned(platform: Platform, wait_timeout_s: float = DEFAULT_WAIT_TIMEOUT_S,
           on_wait: Callable[[str], None] = lambda message: None) -> Iterator[list[int]]:
    """Hold the platform's `threads` free physical cores exclusively (all of them, or wait) and pin
    the calling thread (and the threads it starts) to them; restore the affinity on the way out.

    The highest-numbered free cores are used (core 0 tends to take the interrupts); while none
    is free, wait for one. A platform without a thread count (the GPU's) pins nothing.
    """
    if platform.device != "cpu" or platform.threads is None or not hasattr(os, "sched_setaffinity"):
        yield sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        return
    allowed = sorted(os.sched_getaffinity(0))
    with reserve(allowed, platform.threads, wait_timeout_s, on_wait) as cores:
        os.sched_setaffinity(0, cores)
        try:
            yield cores
        finally:
            os.sched_setaffinity(0, allowed)
