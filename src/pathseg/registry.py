"""A tiny name → object registry, one per extensible axis (backbones, methods, datasets, converters).

Example:
    >>> METHODS: Registry[type] = Registry("pretraining method")
    >>> @METHODS.register("mine")
    ... class Mine: ...
    >>> METHODS.get("mine") is Mine
    True
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from pathseg.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; unknown names raise a :class:`ConfigError` with the nearest match.

    Args:
        kind: What the registry holds, used in error messages (e.g. ``"backbone"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers an object under ``name``; a duplicate name is an error."""

        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered already")
            self._items[name] = obj
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        """Register ``obj`` under ``name`` (non-decorator form)."""
        self.register(name)(obj)

    def get(self, name: str) -> T:
        """Return the object registered as ``name``.

        Raises:
            ConfigError: No such name; the message lists the nearest one and all choices.
        """
        if name not in self._items:
            near = difflib.get_close_matches(name, list(self._items), n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise ConfigError(f"unknown {self.kind} '{name}'{hint}; choices: {', '.join(sorted(self._items))}")
        return self._items[name]

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
