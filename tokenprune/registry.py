"""Name -> callable registries for scorers, selectors and reducers.

Adding a method is a one-file change: decorate the function with ``@SCORERS.register("name")``
in a module that ``tokenprune.scoring`` (or selection/reduce) imports.
"""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from .errors import ConfigError

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    """A small named registry with helpful errors on unknown names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = fn
            return fn

        return deco

    def get(self, name: str, field: str | None = None) -> F:
        if name not in self._items:
            raise ConfigError(
                f"{field or self.kind}: unknown {self.kind} {name!r}; allowed: {', '.join(sorted(self._items))}"
            )
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


SCORERS: Registry = Registry("scorer")
SELECTORS: Registry = Registry("selector")
REDUCERS: Registry = Registry("reducer")
