"""A small, loud registry: duplicate names and unknown names are errors, never silent."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from perfforge.core.errors import RegistryError, suggest

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a snake/kebab-case name to an object (a builder, an engine class, ...)."""

    def __init__(self, axis: str) -> None:
        self.axis = axis
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        if name in self._items:
            raise RegistryError(f"{self.axis} '{name}' is already registered")
        self._items[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items))
            raise RegistryError(
                f"unknown {self.axis} '{name}'{suggest(name, self._items)} (known: {known})"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)
