"""Small output helpers shared by commands: tables, progress on stderr, the placeholder notice."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, track
from rich.table import Table

T = TypeVar("T")

PROGRESS_ENV = "NECKKIT_PROGRESS"  # 1: draw progress even when stderr is not a terminal; 0: never
_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")

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


def _forced() -> bool | None:
    """What ``NECKKIT_PROGRESS`` says: ``True`` (on), ``False`` (off) or ``None`` (decide by the terminal)."""
    value = os.environ.get(PROGRESS_ENV, "").strip().lower()
    return True if value in _ON else False if value in _OFF else None


def progress_enabled(as_json: bool = False) -> bool:
    """The one decision for every progress display on stderr (spinners, bars).

    Off under ``--json``; else ``NECKKIT_PROGRESS=1`` / ``0`` forces it on / off; else on only when stderr
    is a terminal, so pipes, CI logs and tests read no progress noise.
    """
    if as_json:
        return False
    forced = _forced()
    if forced is not None:
        return forced
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # no stderr, or a closed one
        return False


@functools.cache
def _stderr_console(force_terminal: bool) -> Console:
    return Console(stderr=True, force_terminal=force_terminal or None)


def progress_console() -> Console:
    """The stderr console every progress display draws on (forced to a terminal by ``NECKKIT_PROGRESS=1``)."""
    return _stderr_console(_forced() is True)


def _ignore(_description: str) -> None:
    return None


@contextmanager
def stage(description: str, enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """Show ``description``, a spinner and the time so far on stderr while the block runs; erased after.

    Yields a function that relabels the line, e.g. with a count (``"timing round 2/5: decode"``). Nothing
    is shown when ``enabled`` is false (``--json``, ``--no-progress``) or :func:`progress_enabled` says no.
    Print nothing on stdout inside the block: the line is redrawn where the cursor is.
    """
    if not (enabled and progress_enabled()):
        yield _ignore
        return
    display = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        TimeElapsedColumn(),
        console=progress_console(),
        transient=True,
        redirect_stdout=False,
    )
    task = display.add_task(description, total=None)
    with display:
        yield lambda text: display.update(task, description=text, refresh=True)  # drawn now, however brief


def building(kind: str, name: str, options: Mapping[str, Any]) -> str:
    """A stage's words for building a component: ``"building codec 'tic' (tiny)"``."""
    from neckkit.host.placeholders import placeholder_reason

    reason = placeholder_reason(options)
    return f"building {kind} {name!r}" + (f" ({reason})" if reason else "")


def progress(items: Sequence[T], description: str, enabled: bool = True) -> Iterator[T]:
    """Iterate with a progress bar on stderr (hidden when disabled or when :func:`progress_enabled` says no)."""
    if not (enabled and progress_enabled()):
        yield from items
        return
    yield from track(items, description=description, console=progress_console(), transient=True)
