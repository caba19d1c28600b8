"""A small registry of named things (models, experiments): registration order kept, a duplicate name is an
error, and an unknown name is an error that lists the close matches."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from resnetlab.errors import ResnetlabError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named items of one kind.

    Args:
        kind: what the items are, for messages ("model", "experiment").
        listing: the command that lists them, for the hint of an unknown name.
        error: the `ResnetlabError` subclass raised for an unknown name.
        on_first_lookup: called once before the first lookup (a catalog that registers its items on import).
    """

    def __init__(self, kind: str, listing: str, error: type[ResnetlabError] = ResnetlabError,
                 on_first_lookup: Callable[[], None] | None = None) -> None:
        self.kind, self.listing, self.error = kind, listing, error
        self._items: dict[str, T] = {}
        self._on_first_lookup = on_first_lookup

    def register(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def _loaded(self) -> dict[str, T]:
        if self._on_first_lookup is not None:
            load, self._on_first_lookup = self._on_first_lookup, None
            load()
        return self._items

    def get(self, name: str) -> T:
        items = self._loaded()
        try:
            return items[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(items), n=5, cutoff=0.6)
            hint = f"did you mean: {', '.join(close)}?" if close else f"see `{self.listing}` for the list"
            raise self.error(f"unknown {self.kind} {name!r}; {hint}") from None

    def names(self, pattern: str | None = None) -> list[str]:
        """Names in registration order, optionally those matching a shell pattern like ``"preact*"``."""
        return [name for name in self._loaded() if pattern is None or fnmatch.fnmatchcase(name, pattern)]

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._loaded().values()))

    def __contains__(self, name: object) -> bool:
        return name in self._loaded()

    def __len__(self) -> int:
        return len(self._loaded())
