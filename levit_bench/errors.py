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
