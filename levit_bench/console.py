"""Rich consoles sized for a terminal, or wide enough not to truncate tables in a log."""

from __future__ import annotations

import os
import sys

from rich.console import Console

_LOG_WIDTH = 200


def _log_width() -> int:
    columns = os.environ.get("COLUMNS", "")
    return max(_LOG_WIDTH, int(columns)) if columns.isdigit() else _LOG_WIDTH


def stdout_console() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=_log_width())


def stderr_console() -> Console:
    return Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=_log_width())
