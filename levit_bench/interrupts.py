"""SIGTERM handled as Ctrl-C is, so that `kill`, a CI timeout or a scheduler ending a command
unwinds it the same way: partial files removed, a sweep's running cell taken down with it,
and one line saying it was interrupted."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside, SIGTERM raises KeyboardInterrupt (main thread only; the previous handler is restored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def noticed_interrupts() -> Iterator[list[int]]:
    """Inside, Ctrl-C and SIGTERM raise KeyboardInterrupt and are also noted in the yielded list:
    a module whose import catches every exception (some of torch's dependencies do) may swallow
    the KeyboardInterrupt, and the note still says the user asked to stop."""
    noted: list[int] = []

    def interrupt(signum, frame):
        noted.append(signum)
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield noted
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
