"""Name -> class registries with did-you-mean errors (config names build engine parts)."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, TypeVar

from .errors import NnclfError

T = TypeVar("T")


def did_you_mean(name: str, choices: list[str]) -> str:
    """`` (did you mean 'adam'?)`` for the closest choice, or an empty string."""
    choices = [str(c) for c in choices]
    exact = [c for c in choices if c.lower() == str(name).lower()]  # case alone: 'Relu' is 'relu'
    if exact:
        return f" (did you mean '{exact[0]}'?)"
    lowered: dict[str, str] = {}
    for c in choices:
        lowered.setdefault(c.lower(), c)
    close = difflib.get_close_matches(str(name).lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean '{lowered[close[0]]}'?)" if close else ""


class Registry(Generic[T]):
    """Maps config names (and aliases) to classes.

    >>> OPTIMIZERS = Registry("optimizer")
    >>> @OPTIMIZERS.register("sgd")
    ... class SGD: ...
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, *names: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            for name in names:
                if name in self._items:
                    raise ValueError(f"{self.kind} '{name}' registered twice")
                self._items[name] = item
            return item

        return add

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise NnclfError(self.unknown_message(name)) from None

    def unknown_message(self, name: object) -> str:
        valid = ", ".join(self._items)
        return f"unknown {self.kind} '{name}'{did_you_mean(str(name), self.names())}; valid: {valid}"
