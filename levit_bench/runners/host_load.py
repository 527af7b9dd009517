"""The host's load around a measurement, and whether other work ran on the measured cores.

Before and after: the 1-minute load average and the number of runnable tasks. Across the
measurement: how much CPU time the pinned cores spent busy beyond what this process used. A
measurement whose cores gave more than `NOISY_SHARE` of their time (plus a few clock ticks of
slack) to other work is `noisy`: still stored, and shown as such.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import psutil

NOISY_SHARE = 0.05  # of the pinned cores' time, spent on other processes
TICK_SLACK_S = 0.03  # /proc/stat counts in 10 ms ticks: a few of them are rounding, not load


def _runnable() -> int | None:
    """Tasks running or ready to run now (this one included), from /proc/stat."""
    try:
        with open("/proc/stat") as stat:
            for line in stat:
                if line.startswith("procs_running"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _busy_s(cores: list[int]) -> float | None:
    """CPU seconds the given cores have spent on anything but idling, since boot."""
    try:
        per_cpu = psutil.cpu_times(percpu=True)
        return sum(per_cpu[c].user + per_cpu[c].nice + per_cpu[c].system + getattr(per_cpu[c], "irq", 0.0)
                   + getattr(per_cpu[c], "softirq", 0.0) + getattr(per_cpu[c], "steal", 0.0) for c in cores)
    except (IndexError, OSError, AttributeError):
        return None


def _own_cpu_s() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


def settle(cores: list[int], timeout_s: float = 5.0, window_s: float = 0.25) -> float:
    """Wait (up to `timeout_s`) until the cores are quiet for one window; the seconds waited.

    A core just handed over by another measurement may still run that process's exit (its
    store write, its interpreter's teardown) for a second or so; measuring at once would time
    that too. This process's own threads (a runtime's spinning workers) do not count.
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        before, own = _busy_s(cores), _own_cpu_s()
        time.sleep(window_s)
        after, own = _busy_s(cores), _own_cpu_s() - own
        if before is None or after is None or after - before - own <= TICK_SLACK_S:
            break
    return round(time.monotonic() - started, 3)


def snapshot() -> dict:
    return {"loadavg_1m": round(psutil.getloadavg()[0], 2), "runnable": _runnable()}


@dataclass
class LoadWatch:
    """Filled in when the `watch` block ends: `load` (the record's object) and `noisy`."""

    cores: list[int]
    load: dict = field(default_factory=dict)
    noisy: bool = False
    noisy_reason: str | None = None


@contextlib.contextmanager
def watch(cores: list[int]) -> Iterator[LoadWatch]:
    """Watch the host while the block measures on `cores`."""
    result = LoadWatch(list(cores))
    before = snapshot()
    wall0, busy0, own0 = time.monotonic(), _busy_s(cores), _own_cpu_s()
    yield result
    wall, busy1, own = time.monotonic() - wall0, _busy_s(cores), _own_cpu_s() - own0
    result.load = {"before": before, "after": snapshot(), "cores": result.cores, "wall_s": round(wall, 3)}
    if busy0 is None or busy1 is None or not cores:
        return
    other = max(0.0, (busy1 - busy0) - own)
    share = other / (wall * len(cores)) if wall > 0 else 0.0
    result.load.update(other_busy_s=round(other, 3), other_share=round(share, 4))
    if other > NOISY_SHARE * wall * len(cores) + TICK_SLACK_S:
        result.noisy = True
        result.noisy_reason = (f"other work used {share:.0%} of the measured core(s) {cores} "
                               f"({other:.2f} s of {wall:.2f} s)")
