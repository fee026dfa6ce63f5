"""A space's parameters as Optuna distributions, by flat name: what the search's hand-built
default trial is picked from and what a warm start checks old trials against.

They match what :mod:`autofusion.spaces.sample` asks Optuna for, conditional parameters
included; Optuna is imported only when a distribution is built.
"""

from __future__ import annotations

from typing import Any

from autofusion.spaces.load import Space
from autofusion.spaces.sample import CHOICE_SECTIONS
from autofusion.spaces.schema import TRAIN_KEYS, ChoiceSection, Distribution


def to_optuna(d: Distribution) -> Any:
    """The Optuna distribution a schema distribution samples from (see spaces.sample.suggest)."""
    import optuna.distributions as od

    if d.type == "categorical":
        return od.CategoricalDistribution(list(d.choices or []))
    if d.type == "int":
        return od.IntDistribution(int(d.low), int(d.high), log=d.log, step=int(d.step) if d.step else 1)
    return od.FloatDistribution(float(d.low), float(d.high), log=d.log, step=d.step)


def space_distributions(space: Space) -> dict[str, Any]:
    """Every parameter the space can sample, conditional ones included, by flat name."""
    import optuna.distributions as od

    f = space.file
    out: dict[str, Any] = {}

    def section(key: str, sec: ChoiceSection) -> None:
        prefix = key[: -len(".type")] if key.endswith(".type") else key
        if len(sec.choices) > 1:
            out[key] = od.CategoricalDistribution(list(sec.choices))
        for name, params in sec.choices.items():
            for p, v in params.items():
                if isinstance(v, Distribution):
                    out[f"{prefix}.{name}.{p}"] = to_optuna(v)
        for p, v in sec.shared.items():
            if isinstance(v, Distribution):
                out[f"{prefix}.{p}"] = to_optuna(v)

    for m in space.modalities:
        section(f"encoder.{m}", f.encoders[m])
    for s in CHOICE_SECTIONS:
        if getattr(f, s) is not None:
            section(f"{s}.type", getattr(f, s))
    for name, v in (("head.hidden", f.head.hidden), ("head.dropout", f.head.dropout),
                    *((f"train.{k}", getattr(f.train, k)) for k in TRAIN_KEYS)):
        if isinstance(v, Distribution):
            out[name] = to_optuna(v)
    return out
