"""The small generic name -> component registry used for encoders, fusion operators, losses,
optimizers and schedules, and the parameters each component declares.

A component declares its searchable parameters as keyword-only arguments whose annotations
carry their ranges (``heads: Annotated[int, Ge(1)] = 4``, ``pooling: Literal["cls", "mean"]
= "mean"``). The space validator, the documentation tables (``autofusion spaces
components``) and the tests all read them from here, so a bad value is rejected where it is
written (``fusion.choices.attention.heads: must be >= 1, but got 0``), not in every trial.
A lookup miss names the known choices.

(Not "registry": that word is MLflow's Model Registry, see ``autofusion.modelregistry``.)
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Generic, Literal, TypeVar, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt

from autofusion.errors import ConfigError

T = TypeVar("T")

# Common declared types for component parameters.
Size = typing.Annotated[int, Ge(1)]  # a width, a count of heads or layers, a rank
Rate = typing.Annotated[float, Ge(0), Lt(1)]  # a dropout or smoothing probability
NonNegative = typing.Annotated[float, Ge(0)]
Positive = typing.Annotated[float, Gt(0)]

__all__ = ["Ge", "Gt", "Le", "Lt", "NameOf", "NonNegative", "ParamSpec", "Positive", "Rate", "Registry", "Size"]


@dataclass(frozen=True)
class NameOf:
    """Marks a string parameter whose value must name something the space or a registry knows:
    ``Annotated[str | None, NameOf("modality")]`` (one of the space's modalities), or
    ``NameOf("image")`` (a registered image encoder)."""

    what: str


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter of a component.

    Attributes:
        name: the keyword a space file sets.
        annotation: the resolved annotation (``Annotated[int, Ge(1)]``, ``Literal[...]``, ...).
        default: the default value (None where there is none).
        doc: the line the component's docstring gives it under ``Args:``, if any.
    """

    name: str
    annotation: Any
    default: Any
    doc: str = ""

    @property
    def base_type(self) -> type | None:
        """``int``, ``float``, ``bool`` or ``str`` (None when the annotation says nothing simpler)."""
        tp = _strip(self.annotation)
        if get_origin(tp) is Literal:
            values = get_args(tp)
            return type(values[0]) if values else None
        if get_origin(tp) in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            tp = _strip(args[0]) if len(args) == 1 else None
        return tp if tp in (int, float, bool, str) else None

    @property
    def choices(self) -> tuple[Any, ...] | None:
        """The allowed values of a ``Literal`` parameter."""
        tp = _strip(self.annotation)
        return get_args(tp) if get_origin(tp) is Literal else None

    def metadata(self) -> list[Any]:
        """What ``Annotated`` attaches to the type (bounds, markers)."""
        return _metadata(self.annotation)

    def bounds(self) -> list[tuple[str, Any]]:
        """The declared bounds as (operator, value) pairs, e.g. ``[(">=", 1)]``."""
        out = []
        for meta in _metadata(self.annotation):
            for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
                v = getattr(meta, attr, None)
                if v is not None:
                    out.append((op, v))
        return out

    def describe_range(self) -> str:
        """The rule in words: ``>= 1``, ``one of: cls, mean``, ``>= 0 and < 1``."""
        if self.choices is not None:
            return "one of: " + ", ".join(str(c) for c in self.choices)
        return " and ".join(f"{op} {v}" for op, v in self.bounds())

    def check(self, value: Any) -> str | None:
        """Why ``value`` is not allowed (None when it is). None is allowed where the default is None."""
        if value is None:
            return None if self.default is None else "must be set, but got null"
        kind = self.base_type
        if kind is not None and not _is_kind(value, kind):
            return f"expected {kind.__name__}, but got {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"must be {self.describe_range()}, but got {value!r}"
        for op, bound in self.bounds():
            ok = {">=": value >= bound, ">": value > bound, "<=": value <= bound, "<": value < bound}[op]
            if not ok:
                return f"must be {self.describe_range()}, but got {value!r}"
        return None


def _strip(tp: Any) -> Any:
    """The type inside ``Annotated[...]``."""
    while get_origin(tp) is typing.Annotated:
        tp = get_args(tp)[0]
    return tp


def _metadata(tp: Any) -> list[Any]:
    out: list[Any] = []
    while get_origin(tp) is typing.Annotated:
        out.extend(tp.__metadata__)
        tp = get_args(tp)[0]
    if get_origin(tp) in (Union, types.UnionType):  # Optional[Annotated[...]]
        for a in get_args(tp):
            if a is not type(None):
                out.extend(_metadata(a))
    return out


def _is_kind(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer()
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def _arg_docs(obj: Any) -> dict[str, str]:
    """``name: text`` entries of the Google-style ``Args:`` section of ``obj``'s docstring."""
    doc = inspect.getdoc(obj) or ""
    if "Args:" not in doc:
        return {}
    out: dict[str, str] = {}
    last = None
    for line in doc.split("Args:", 1)[1].splitlines()[1:]:
        indent = len(line) - len(line.lstrip())
        if line.strip() and indent == 0:
            break  # the next section
        m = re.match(r"^(\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line.strip())
        if indent == 4 and m:
            last = m.group(1)
            out[last] = m.group(2).strip()
        elif last and line.strip():
            out[last] = f"{out[last]} {line.strip()}".strip()
    return out


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
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def param_specs(self, name: str) -> dict[str, ParamSpec]:
        """The keyword-only parameters an entry declares (the ones a space file may set)."""
        obj = self.get(name)
        target = obj.__init__ if inspect.isclass(obj) else obj  # type: ignore[misc]
        try:
            hints = typing.get_type_hints(target, include_extras=True)
        except (NameError, TypeError):  # an annotation that does not resolve: no types, defaults only
            hints = {}
        docs = _arg_docs(obj)
        sig = inspect.signature(obj)
        return {
            p.name: ParamSpec(p.name, hints.get(p.name, Any),
                              None if p.default is inspect.Parameter.empty else p.default, docs.get(p.name, ""))
            for p in sig.parameters.values()
            if p.kind is p.KEYWORD_ONLY
        }

    def params(self, name: str) -> dict[str, object]:
        """The declared parameters with their defaults."""
        return {k: s.default for k, s in self.param_specs(name).items()}

    def summary(self, name: str) -> str:
        """The first line of the entry's docstring."""
        doc = (inspect.getdoc(self.get(name)) or "").strip()
        return doc.splitlines()[0] if doc else ""
