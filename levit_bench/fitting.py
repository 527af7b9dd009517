"""Tables that fit the terminal, the way pyperf's and benchmark_app's output does.

A view declares its columns: those that answer the question (`keep`: shown whole, always),
and the rest in the order they give way when the terminal is too narrow (`drop`: the highest
goes first). Before any column is dropped, a column whose value every row shares (`shared`:
the host) is said once in the title, and columns with a compact form (`compact`: a runtime's
short name) switch to it, with a legend of the short names under the table. Free text that may
be long (`fold`: an error, why a cell is unstable) wraps instead of widening the table. Once
it fits, the whole names come back and a narrower column that gave way is shown again where
the room allows.
`wide` shows every column at its full width, however wide that makes the table.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.measure import Measurement
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

FOLD_MIN_WIDTH = 16  # a folding column is this wide at least while other columns can give way
FOLD_NARROWEST = 6  # and never narrower
_UNBOUNDED = 100_000


@dataclass(frozen=True)
class Column:
    header: str
    text: Callable[[dict], str]  # the cell of a row (rich markup allowed)
    justify: str = "left"
    keep: bool = False  # answers the question: never dropped, never cut
    drop: int = 0  # among the others, a higher one gives way first
    fold: bool = False  # long free text: wraps within the column
    shared: bool = False  # when every row has the same value, named once in the title
    compact: Callable[[dict], str] | None = None  # a shorter form, used before any column is dropped


@dataclass(frozen=True)
class Fitted:
    table: Table
    legend: str | None  # what the compact forms stand for, when they are used


def fit(title: str, columns: Sequence[Column], rows: Sequence[dict], console: Console, wide: bool = False,
        legend: Callable[[Sequence[dict]], str | None] = lambda rows: None) -> Fitted:
    """The table of `rows` under `title`, with as many of `columns` as fit `console`'s width."""
    shown = list(columns)
    compact = False
    fold_width = FOLD_MIN_WIDTH
    if not wide:
        shared = [c for c in shown if c.shared and rows and len({c.text(r) for r in rows}) == 1]
        said = [shared_value(c, rows[0]) for c in shared  # not twice: `Sweep on xeon` names its platform
                if not re.search(rf"\b{re.escape(c.text(rows[0]))}\b", title)]
        if said:
            title += " on " + ", ".join(said)
        shown = [c for c in shown if c not in shared]
        droppable = sorted((c for c in shown if not c.keep), key=lambda c: -c.drop)
        dropped: list[Column] = []
        while not _fits(_table(title, shown, rows, compact, fold_width), console):
            if not compact and any(c.compact for c in shown):
                compact = True
            elif droppable:
                dropped.append(droppable.pop(0))
                shown.remove(dropped[-1])
            elif fold_width > FOLD_NARROWEST:  # only the question's columns left: their free text folds tighter
                fold_width -= 1
            else:
                break
        if compact and _fits(_table(title, shown, rows, False, fold_width), console):
            compact = False  # the columns that gave way left room for the whole names again
        for column in reversed(dropped[:-1]):  # a narrower one dropped before the last may fit again
            wider = [c for c in columns if c in shown or c is column]
            if _fits(_table(title, wider, rows, compact, fold_width), console):
                shown = wider
    table = _table(title, shown, rows, compact, fold_width)
    if wide:
        console.width = max(console.width, _measure(table, console).maximum)
    return Fitted(table, legend(rows) if compact else None)


def shared_value(column: Column, row: dict) -> str:
    return column.text(row) if column.header == "host" else f"{column.header} {column.text(row)}"


def _table(title: str, columns: Sequence[Column], rows: Sequence[dict], compact: bool,
           fold_width: int = FOLD_MIN_WIDTH) -> Table:
    """The table; a column that does not fold is as wide as its widest cell, so that rich, which
    measures a column's minimum by its longest word, never cuts it."""
    cells = [[(c.compact if compact and c.compact else c.text)(row) for c in columns] for row in rows]
    table = Table(title=title)
    for i, c in enumerate(columns):
        if c.fold:
            table.add_column(c.header, justify=c.justify, overflow="fold", min_width=fold_width)
        else:
            width = max([cell_len(c.header), *(Text.from_markup(line[i]).cell_len for line in cells)])
            table.add_column(c.header, justify=c.justify, no_wrap=True, min_width=width)
    for line in cells:
        table.add_row(*line)
    return table


def _measure(table: Table, console: Console) -> Measurement:
    """The table's own widths, not clamped to the console's (as rich's Measurement.get is)."""
    return Measurement.get(console, console.options.update_width(_UNBOUNDED), table)


def _fits(table: Table, console: Console) -> bool:
    return _measure(table, console).minimum <= console.width


def print_fitted(console: Console, fitted: Fitted) -> None:
    console.print(fitted.table)
    if fitted.legend:
        console.print(fitted.legend, highlight=False)
