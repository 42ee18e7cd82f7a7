"""Small output helpers shared by commands: tables and progress bars."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from rich.console import Console
from rich.progress import track
from rich.table import Table

T = TypeVar("T")

_announced: set[str] = set()


def announce_placeholders() -> None:
    """Print, on stderr, one notice naming the tiny/random-init components built since the last notice.

    Commands call it once their components are built (the CLI also calls it when a command ends), so a
    run on placeholder weights says so once, before its output is read as a result.
    """
    from neckkit.host.placeholders import built_placeholders, notice

    labels = [label for label in built_placeholders() if label not in _announced]
    if labels:
        _announced.update(labels)
        Console(stderr=True, soft_wrap=True, highlight=False).print(notice(labels), markup=False)


def forget_placeholders() -> None:
    """A new command starts: nothing built, nothing announced (several commands may run in one process)."""
    from neckkit.host.placeholders import reset

    reset()
    _announced.clear()


def print_table(columns: Sequence[str], rows: Iterable[Sequence[str]], title: str | None = None) -> None:
    """A readable table on stdout."""
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    # A pipe or file gets the whole table on long lines instead of cells folded into 80 columns.
    Console(soft_wrap=True, width=None if sys.stdout.isatty() else 240).print(table)


def progress(items: Sequence[T], description: str, enabled: bool = True) -> Iterator[T]:
    """Iterate with a progress bar on stderr (hidden when disabled or not a terminal)."""
    if not enabled:
        yield from items
        return
    yield from track(items, description=description, console=Console(stderr=True), transient=True)
