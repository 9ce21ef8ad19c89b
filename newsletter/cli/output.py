"""How a command's output looks. A person at a terminal gets tables and progress bars
(rich); everything else (a pipe, a file, a test, a script) gets the `key: value` lines of
the CONTRACT, byte for byte as they always were. This is the one place that decides which.

Plain when stdout is not a terminal or TERM is `dumb`; NO_COLOR (https://no-color.org)
keeps the tables but drops their colours. Progress bars go to stderr, and only when both
streams are a terminal: a bar is never part of output a program reads."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

import click
from rich import box
from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

Pairs = Sequence[tuple[str, object]]
Advance = Callable[[int], None]


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def interactive() -> bool:
    """Whether stdout is a terminal a person reads (tables) rather than a program (lines)."""
    if os.environ.get("TERM", "").lower() in ("dumb", "unknown"):
        return False
    return _is_tty(sys.stdout)


def _console(stream: TextIO) -> Console:
    if os.environ.get("NO_COLOR", "") != "":
        # No escape sequence at all, bold and dim included: rich's no_color keeps those.
        return Console(file=stream, color_system=None, highlight=False)
    return Console(file=stream, highlight=False)


def key_value_table(pairs: Pairs, title: str | None = None) -> Table:
    """A two-column table of `pairs` (keys dim, values as they are)."""
    table = Table(box=box.ROUNDED, show_header=False, title=title, title_justify="left")
    table.add_column(style="dim")
    table.add_column(overflow="fold")
    for key, value in pairs:
        table.add_row(Text(key), Text(str(value)))  # Text: a value's brackets are not markup
    return table


def key_values(pairs: Pairs, title: str | None = None) -> None:
    """`pairs` as a table on a terminal; otherwise one `key: value` line each."""
    if interactive():
        _console(sys.stdout).print(key_value_table(pairs, title))
        return
    for key, value in pairs:
        click.echo(f"{key}: {value}")


def rows(columns: Sequence[str], records: Sequence[Sequence[object]], plain: Callable[[Sequence[object]], str]) -> None:
    """`records` as a table with a header on a terminal; otherwise each as `plain(record)`."""
    if not interactive():
        for record in records:
            click.echo(plain(record))
        return
    table = Table(box=box.ROUNDED)
    for name in columns:
        table.add_column(name)
    for record in records:
        table.add_row(*(Text(str(value)) for value in record))
    _console(sys.stdout).print(table)


@contextmanager
def progress_bar(
    description: str, total: int | None, counts: bool = True
) -> Iterator[tuple[Advance | None, Callable[..., None]]]:
    """A progress bar on stderr while the block runs, when a person watches. Yields
    (advance, update): `advance(n)` moves it n steps on, `update(completed=..., total=...,
    description=...)` sets it. `counts`: show "done/total" (off when steps are not rows).
    In plain output advance is None (callers skip the work of counting) and update does
    nothing."""
    if not (interactive() and _is_tty(sys.stderr)):
        yield None, _ignore
        return
    columns = [TextColumn("{task.description}"), BarColumn(), *([MofNCompleteColumn()] if counts else []),
               TaskProgressColumn(), TimeElapsedColumn()]
    bar = Progress(*columns, console=_console(sys.stderr), transient=False)
    task = bar.add_task(description, total=total)
    with bar:
        yield (lambda steps: bar.advance(task, steps)), (lambda **fields: bar.update(task, **fields))


def _ignore(**_fields: Any) -> None:
    return None


@contextmanager
def live(first: RenderableType) -> Iterator[Callable[[RenderableType], None]]:
    """A display on stdout that is redrawn in place (terminal only); yields `show(new)`."""
    with Live(first, console=_console(sys.stdout), auto_refresh=False) as display:
        yield lambda renderable: display.update(renderable, refresh=True)
