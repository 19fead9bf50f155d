"""How long jobs report progress: a Reporter passed in (the CLI's prints to stderr; the default says nothing)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar

T = TypeVar("T")


class Reporter(Protocol):
    def log(self, line: str) -> None:
        """One line of news (stderr on a terminal)."""

    def steps(self, items: Iterable[T], label: str, length: int | None = None
              ) -> contextlib.AbstractContextManager[Iterable[T]]:
        """The items, shown as a progress bar where there is a terminal."""


class Silent:
    """A Reporter that reports nothing (library use, tests)."""

    def log(self, line: str) -> None:
        pass

    @contextlib.contextmanager
    def steps(self, items: Iterable[T], label: str, length: int | None = None) -> Iterator[Iterable[T]]:
        yield items
