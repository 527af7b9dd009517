"""Errors that reach the user as one line: the CLI prints them without a traceback."""

from __future__ import annotations

from collections.abc import Iterable


class LevitBenchError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class UnknownModelError(LevitBenchError, KeyError):
    def __init__(self, name: str, known: Iterable[str]):
        self.name = name
        self.known = sorted(known)
        super().__init__(name)

    def __str__(self) -> str:
        return f"unknown model {self.name!r}; known models: {', '.join(self.known)}"


class CheckpointError(LevitBenchError):
    """A checkpoint that cannot be read, fetched, trusted or fitted to the model."""


def one_line(e: BaseException, name_foreign: bool = True) -> str:
    """The first line of an error's message. A foreign error (not a LevitBenchError) is
    prefixed with its type when `name_foreign`, since its message alone may not say what failed."""
    lines = str(e).strip().splitlines()
    if not lines:
        return type(e).__name__
    return f"{type(e).__name__}: {lines[0]}" if name_foreign and not isinstance(e, LevitBenchError) else lines[0]
