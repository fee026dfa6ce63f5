"""From a validated space to Optuna's define-by-run function, and from a sampled flat
configuration back to a typed :class:`TrialConfig`.

Parameter names are flat and dotted, the same in Optuna, Ray Tune and MLflow:
``encoder.image`` (the choice), ``encoder.image.small_cnn.width`` (its parameter),
``fusion.type``, ``fusion.attention.heads``, ``fusion.weights``, ``optimizer.type``,
``optimizer.lr``, ``loss.type``, ``head.hidden``, ``train.batch_size``. A parameter that
belongs to one choice carries the choice's name, so it exists only in trials that pick that
choice and Optuna's TPE sees the true conditional structure. Dots are not Ray's nesting
delimiter ("/"), so Ray passes these names through untouched.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from autofusion.errors import ConfigError
from autofusion.spaces.load import Space
from autofusion.spaces.schema import TRAIN_KEYS, ChoiceSection, Distribution

# Section name in the file -> prefix of its parameters; the choice itself is "<prefix>.type".
CHOICE_SECTIONS = ("fusion", "loss", "optimizer", "lr_schedule")


def suggest(trial: Any, name: str, value: Any, consts: dict[str, Any]) -> Any:
    """Samples ``name`` from ``trial`` when ``value`` is a distribution, else records the constant."""
    if not isinstance(value, Distribution):
        consts[name] = value
        return value
    if value.type == "categorical":
        return trial.suggest_categorical(name, list(value.choices or []))
    if value.type == "int":
        step = int(value.step) if value.step is not None else 1
        return trial.suggest_int(name, int(value.low), int(value.high), step=step, log=value.log)
    return trial.suggest_float(name, float(value.low), float(value.high), step=value.step, log=value.log)


def _choice(trial: Any, key: str, section: ChoiceSection, consts: dict[str, Any]) -> None:
    names = list(section.choices)
    pick = trial.suggest_categorical(key, names) if len(names) > 1 else names[0]
    if len(names) == 1:
        consts[key] = pick
    for pname, pval in section.choices[pick].items():
        suggest(trial, f"{_prefix(key)}.{pick}.{pname}", pval, consts)
    for pname, pval in section.shared.items():
        suggest(trial, f"{_prefix(key)}.{pname}", pval, consts)


def _prefix(key: str) -> str:
    return key[: -len(".type")] if key.endswith(".type") else key


class DefineByRun:
    """Optuna define-by-run function over a space; returns the constants it fixed.

    It only samples; it never computes (Ray warns when it takes long). A class rather
    than a closure so that Ray can pickle the searcher with the experiment state.
    """

    def __init__(self, space: Space, max_epochs: int) -> None:
        self.space = space
        self.max_epochs = max_epochs

    def __call__(self, trial: Any) -> dict[str, Any]:
        f = self.space.file
        consts: dict[str, Any] = {}
        for modality in self.space.modalities:
            _choice(trial, f"encoder.{modality}", f.encoders[modality], consts)
        for section in CHOICE_SECTIONS:
            sec = getattr(f, section)
            if sec is not None:
                _choice(trial, f"{section}.type", sec, consts)
        suggest(trial, "head.hidden", f.head.hidden, consts)
        suggest(trial, "head.dropout", f.head.dropout, consts)
        for key in TRAIN_KEYS:
            value = getattr(f.train, key)
            if key == "epochs" and value is None:
                value = self.max_epochs
            suggest(trial, f"train.{key}", value, consts)
        return consts


def define_by_run(space: Space, max_epochs: int) -> Callable[[Any], dict[str, Any]]:
    """The define-by-run function of ``space`` (see :class:`DefineByRun`)."""
    return DefineByRun(space, max_epochs)


def _bool(v: Any) -> bool:
    """Booleans that went through MLflow params come back as strings."""
    return v.strip().lower() in ("true", "1", "yes") if isinstance(v, str) else bool(v)


@dataclass(frozen=True)
class Choice:
    """A picked registry entry and its parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialConfig:
    """Everything needed to build and train one trial's model; built from a flat config."""

    encoders: dict[str, Choice]
    fusion: Choice
    fusion_weights: str
    head_hidden: int
    head_dropout: float
    loss: Choice
    aux_weight: float
    optimizer: Choice
    lr: float
    weight_decay: float
    lr_schedule: Choice
    warmup_epochs: int
    batch_size: int
    epochs: int
    modality_dropout: float
    grad_clip: float
    amp: bool
    augment: str = "none"

    @classmethod
    def from_flat(cls, flat: dict[str, Any], modalities: list[str], max_epochs: int | None = None) -> "TrialConfig":
        """Parses the dotted names produced by :func:`define_by_run`."""

        def pick(key: str) -> Choice:
            name = flat[key]
            pre = f"{_prefix(key)}.{name}."
            return Choice(name, {k[len(pre):]: v for k, v in flat.items() if k.startswith(pre)})

        try:
            epochs = int(flat["train.epochs"])
            if max_epochs is not None:
                epochs = min(epochs, max_epochs)
            schedule = pick("lr_schedule.type") if "lr_schedule.type" in flat else Choice("none")
            return cls(
                encoders={m: pick(f"encoder.{m}") for m in modalities},
                fusion=pick("fusion.type"),
                fusion_weights=str(flat.get("fusion.weights", "fixed")),
                head_hidden=int(flat["head.hidden"]),
                head_dropout=float(flat["head.dropout"]),
                loss=pick("loss.type"),
                aux_weight=float(flat.get("loss.aux_weight", 0.0)),
                optimizer=pick("optimizer.type"),
                lr=float(flat["optimizer.lr"]),
                weight_decay=float(flat.get("optimizer.weight_decay", 0.0)),
                lr_schedule=schedule,
                warmup_epochs=int(flat.get("lr_schedule.warmup_epochs", 0)),
                batch_size=int(flat["train.batch_size"]),
                epochs=max(1, epochs),
                modality_dropout=float(flat.get("train.modality_dropout", 0.0)),
                grad_clip=float(flat.get("train.grad_clip") or 0.0),
                amp=_bool(flat.get("train.amp", True)),
                augment=str(flat.get("train.augment", "none")),
            )
        except KeyError as exc:
            raise ConfigError(f"trial configuration lacks {exc.args[0]!r}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
