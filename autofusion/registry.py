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

    def params(self, name: str) -> dict[str, object]:
        """The keyword-only parameters an entry accepts (the ones a space file may set),
        with their defaults (None where there is none)."""
        sig = inspect.signature(self.get(name))
        return {
            p.name: (None if p.default is inspect.Parameter.empty else p.default)
            for p in sig.parameters.values()
            if p.kind is p.KEYWORD_ONLY
        }
