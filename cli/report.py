"""Small output helpers shared by commands: tables and progress bars."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from rich.console import Console
from rich.progress import track
from rich.table import Table

T = TypeVar("T")


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
