"""Rich consoles sized for a terminal (or $COLUMNS), else wide enough for a log."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from rich.console import Console

_LOG_WIDTH = 200


def _log_width() -> int:
    """Output to a file or a pipe: $COLUMNS when set (the tables fit it), else wide for a log."""
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else _LOG_WIDTH


def stdout_console() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=_log_width())


def stderr_console() -> Console:
    return Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=_log_width())


@contextlib.contextmanager
def native_stderr_quiet() -> Iterator[None]:
    """File descriptor 2 to /dev/null for a while: native libraries (Ray's core, ExecuTorch's
    cpuinfo) log their start-up there, below Python's sys.stderr; what a failure says still
    comes back as its exception."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
