"""The terminal's Reporter: log lines and progress bars on stderr, so that stdout stays clean for --json."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

import click

T = TypeVar("T")


class Terminal:
    def log(self, line: str) -> None:
        click.echo(line, err=True)

    @contextlib.contextmanager
    def steps(self, items: Iterable[T], label: str, length: int | None = None) -> Iterator[Iterable[T]]:
        """A progress bar over `items` on a terminal; the bare items elsewhere (logs, CI, tests)."""
        if not sys.stderr.isatty():
            yield items
            return
        with click.progressbar(items, label=label, length=length, file=sys.stderr,
                               show_eta=True, show_percent=True, width=30) as bar:
            yield bar
