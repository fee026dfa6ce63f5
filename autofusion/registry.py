"""A small generic name -> class registry, used for encoders, fusion operators, losses and
optimizers. A lookup miss names the known choices."""

from __future__ import annotations

import inspect
from typing import Callable, Generic, TypeVar

from autofusion.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to classes (or factories) of one kind.

    Args:
        kind: what the entries are, used in error messages ("image encoder").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that adds ``obj`` under ``name``."""

        def deco(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        """Returns the entry, or raises ConfigError naming the known ones."""
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def params(self, name: str) -> list[str]:
        """The keyword parameters an entry accepts (beyond the ones the builder passes)."""
        obj = self.get(name)
        sig = inspect.signature(obj)
        return [
            p.name
            for p in sig.parameters.values()
            if p.kind is p.KEYWORD_ONLY
        ]
