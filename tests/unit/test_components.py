"""The generic registry and the parameters a component declares: a lookup miss names the known
entries, a name is registered once, and each declared parameter's type, range, choices,
default and docstring line are read from its annotation and checked as a space file sets it."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest

from autofusion.components import Ge, Le, NameOf, ParamSpec, Rate, Registry, Size
from autofusion.errors import ConfigError


def _registry() -> Registry:
    reg: Registry = Registry("widget")

    @reg.register("gear")
    class Gear:
        """A gear.

        Args:
            teeth: how many teeth it has, a count
                that goes on a second line.
            pitch: mm.
        """

        def __init__(self, size: int, *, teeth: Size = 12, pitch: Annotated[float, Ge(0.5), Le(4)] = 1.0,
                     shape: Literal["spur", "helical"] = "spur", drop: Rate = 0.0,
                     target: Annotated[str | None, NameOf("modality")] = None, free=3) -> None:
            pass

    @reg.register("lever")
    def lever(*, arm: float = 2.0) -> str:
        """A lever, made by a function."""
        return "lever"

    return reg


def test_a_lookup_miss_names_the_known_entries():
    reg = _registry()
    assert reg.names() == ["gear", "lever"] and "gear" in reg and "chain" not in reg
    with pytest.raises(ConfigError, match="unknown widget 'chain'; known: gear, lever"):
        reg.get("chain")


def test_a_name_is_registered_once():
    reg = _registry()
    with pytest.raises(ValueError, match="widget 'gear' is registered twice"):
        reg.register("gear")(object)


def test_the_declared_parameters_are_the_keyword_only_ones():
    reg = _registry()
    specs = reg.param_specs("gear")
    assert list(specs) == ["teeth", "pitch", "shape", "drop", "target", "free"]  # not the positional ``size``
    assert reg.params("gear") == {"teeth": 12, "pitch": 1.0, "shape": "spur", "drop": 0.0, "target": None, "free": 3}
    assert specs["teeth"].doc == "how many teeth it has, a count that goes on a second line."
    assert reg.param_specs("lever")["arm"].base_type is float and reg.summary("lever") == "A lever, made by a function."


def test_types_ranges_and_choices_come_from_the_annotations():
    specs = _registry().param_specs("gear")
    assert (specs["teeth"].base_type, specs["teeth"].describe_range()) == (int, ">= 1")
    assert specs["pitch"].bounds() == [(">=", 0.5), ("<=", 4)]
    assert (specs["shape"].base_type, specs["shape"].choices) == (str, ("spur", "helical"))
    assert specs["drop"].describe_range() == ">= 0 and < 1"
    assert specs["target"].base_type is str and any(isinstance(m, NameOf) for m in specs["target"].metadata())
    assert specs["free"].base_type is None and specs["free"].describe_range() == ""


@pytest.mark.parametrize("name,value,problem", [
    ("teeth", 0, "must be >= 1, but got 0"),
    ("teeth", 2.5, "expected int, but got 2.5"),
    ("teeth", True, "expected int, but got True"),
    ("teeth", None, "must be set, but got null"),
    ("pitch", 5, "must be >= 0.5 and <= 4, but got 5"),
    ("pitch", "big", "expected float, but got 'big'"),
    ("shape", "bevel", "must be one of: spur, helical, but got 'bevel'"),
    ("drop", 1.0, "must be >= 0 and < 1, but got 1.0"),
])
def test_a_value_outside_the_declared_rule_is_named(name, value, problem):
    assert _registry().param_specs("gear")[name].check(value) == problem


@pytest.mark.parametrize("name,value", [("teeth", 3), ("teeth", 4.0), ("pitch", 4), ("shape", "helical"),
                                        ("drop", 0.0), ("target", None), ("free", "anything")])
def test_a_value_inside_the_rule_passes(name, value):
    assert _registry().param_specs("gear")[name].check(value) is None


def test_an_annotation_that_does_not_resolve_keeps_the_defaults():
    reg: Registry = Registry("thing")

    @reg.register("odd")
    def odd(*, x: "NotAType" = 1) -> None:  # noqa: F821 - on purpose: it cannot be resolved
        """Odd."""

    spec = reg.param_specs("odd")["x"]
    assert isinstance(spec, ParamSpec) and spec.default == 1 and spec.check("whatever") is None
