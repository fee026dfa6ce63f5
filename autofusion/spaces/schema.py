"""The search-space file schema, validated with pydantic before anything runs.

A space file says which modalities a task has and how they are preprocessed, which
encoders, fusion operators, losses, optimizers and schedules the search may pick, with
their own (conditional) hyper-parameters, and the default search settings. The YAML
vocabulary follows Optuna's: ``type: float|int|categorical`` with ``low``, ``high``,
``log``, ``step`` and ``choices``; bounds are inclusive everywhere. See
``search_spaces/README.md`` for the user-facing description.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

Scalar = Union[bool, int, float, str, None]

# Aliases users know from Ray Tune / Hyperopt, normalised to Optuna's three kinds.
DIST_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "float": ("float", {}),
    "uniform": ("float", {}),
    "loguniform": ("float", {"log": True}),
    "quniform": ("float", {}),
    "int": ("int", {}),
    "randint": ("int", {}),
    "categorical": ("categorical", {}),
    "choice": ("categorical", {}),
}


class KeyPathError(ValueError):
    """A problem found below the field pydantic reports; the loader joins the two key paths.

    Args:
        path: keys below the reported field (``("choices", "attention", "heads")``).
        reason: the rule and the bad value.
    """

    def __init__(self, path: tuple[str, ...], reason: str) -> None:
        super().__init__(f"{'.'.join(path)}: {reason}" if path else reason)
        self.path = tuple(path)
        self.reason = reason

    def __reduce__(self):  # keeps it picklable despite the two-argument constructor
        return (type(self), (self.path, self.reason))


def error_parts(err: dict[str, Any]) -> tuple[tuple[str, ...], str]:
    """Key path and one-line message of one pydantic error (``ValidationError.errors()``).

    The path includes the keys a :class:`KeyPathError` names; the message names the value
    unless it is a mapping (the path says which).
    """
    loc = tuple(str(p) for p in err["loc"] if not str(p).startswith("function-"))
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, KeyPathError):
        return loc + cause.path, cause.reason
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    if err["type"] == "missing":
        return loc, "missing key"
    value = err.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    return loc, f"{msg}{shown}"


# PyYAML reads YAML 1.1, where ``1e-3`` and ``1.0e3`` (no dot, or no exponent sign) are
# strings; users mean numbers.
_SCI_NUMBER = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def yaml_number(value: Any) -> Any:
    """``"1e-3"`` -> ``0.001``; any other value unchanged."""
    if isinstance(value, str) and _SCI_NUMBER.match(value.strip()):
        return float(value)
    return value


def flow(value: Any) -> str:
    """A value as one line of YAML, for messages that show what to write."""
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip().removesuffix("...").strip()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Distribution(_Strict):
    """One searchable hyper-parameter.

    ``float``: uniform on [low, high], log-uniform with ``log: true``, quantised with
    ``step``. ``int``: integers in [low, high] (inclusive), optional ``step`` or ``log``.
    ``categorical``: one of ``choices``.
    """

    type: str
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = None
    choices: list[Scalar] | None = None

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "type" not in data:
            raise ValueError(
                "a mapping here is a distribution and needs 'type' (float, int or categorical), "
                f"but got {flow(data)}"
            )
        kind = data["type"]
        if kind not in DIST_ALIASES:
            raise ValueError(f"unknown distribution type {kind!r}; known: {', '.join(DIST_ALIASES)}")
        if kind == "quniform" and data.get("step") is None:
            raise ValueError("quniform needs 'step' (the quantum), but got none")
        base, extra = DIST_ALIASES[kind]
        data = {**extra, **data, "type": base}
        for key in ("low", "high", "step"):
            if data.get(key) is not None:
                v = data[key] = yaml_number(data[key])
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ValueError(f"{key} must be a number, but got {v!r}")
        if isinstance(data.get("choices"), list):
            data["choices"] = [yaml_number(c) for c in data["choices"]]
        return data

    @model_validator(mode="after")
    def _check(self) -> "Distribution":
        if self.type == "categorical":
            if self.low is not None or self.high is not None or self.step is not None:
                raise ValueError(
                    f"categorical takes 'choices', not low/high/step, but got "
                    f"(low={self.low}, high={self.high}, step={self.step})"
                )
            if not self.choices:
                raise ValueError(f"categorical needs a non-empty 'choices' list, but got choices={self.choices}")
            if len(set(map(repr, self.choices))) != len(self.choices):
                raise ValueError(f"choices must be distinct, but got {flow(self.choices)}")
            return self
        if self.choices is not None:
            raise ValueError(f"{self.type} takes low/high, not 'choices', but got choices={flow(self.choices)}")
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs both 'low' and 'high', but got (low={self.low}, high={self.high})")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"low and high must be finite numbers, but got (low={self.low}, high={self.high})")
        if self.low > self.high:
            raise ValueError(f"low <= high must hold, but got (low={self.low}, high={self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0, but got low={self.low}")
        if self.log and self.step is not None:
            raise ValueError(f"'step' and 'log: true' cannot be combined, but got step={self.step}")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"step must be > 0, but got step={self.step}")
        if self.type == "int":
            for name in ("low", "high", "step"):
                v = getattr(self, name)
                if v is not None and float(v) != int(v):
                    raise ValueError(f"int needs whole numbers, but got {name}={v}")
        return self

    def contains(self, value: Any) -> bool:
        """Whether ``value`` can be sampled from this distribution (for warm starts)."""
        if self.type == "categorical":
            return value in (self.choices or [])
        try:
            return self.low <= float(value) <= self.high  # type: ignore[operator]
        except (TypeError, ValueError):
            return False


Param = Union[Distribution, Scalar, list]


def is_dist(value: Any) -> bool:
    return isinstance(value, Distribution)


def parse_value(raw: Any, path: tuple[str, ...] = ()) -> Param:
    """A constant, or a :class:`Distribution` for a mapping; errors carry ``path``.

    A list is rejected with the categorical it probably meant: a list constant would be
    passed as-is to a constructor that expects one value.
    """
    if isinstance(raw, Distribution):
        return raw
    if isinstance(raw, dict):
        try:
            return Distribution.model_validate(raw)
        except ValidationError as exc:
            loc, msg = error_parts(exc.errors()[0])
            raise KeyPathError(path + loc, msg) from None
    if isinstance(raw, list):
        raise KeyPathError(
            path,
            f"a list is not a value; to search over its items write "
            f"{{type: categorical, choices: {flow(raw)}}}, but got {flow(raw)}",
        )
    return yaml_number(raw)


def _parse_params(raw: Any, path: tuple[str, ...]) -> dict[str, Param]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise KeyPathError(path, f"must be a mapping of parameter -> value or distribution, but got {raw!r}")
    out: dict[str, Param] = {}
    for key, val in raw.items():
        if not isinstance(key, str):
            raise KeyPathError(path, f"parameter names must be strings, but got {key!r}")
        out[key] = parse_value(val, path + (key,))
    return out


class ChoiceSection(_Strict):
    """A named choice with per-choice parameters, plus parameters shared by every choice.

    ``choices: {name: {param: value|distribution}}``; other keys of the section are
    shared parameters (``optimizer.lr``) whose allowed names each section declares.
    """

    choices: dict[str, dict[str, Param]]
    shared: dict[str, Param] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _split(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise KeyPathError((), f"must be a mapping with a 'choices' key, but got {data!r}")
        if "choices" not in data:
            raise KeyPathError(("choices",), "missing key; list the names the search may pick")
        choices = data["choices"]
        if not isinstance(choices, (dict, list)) or not choices:
            raise KeyPathError(
                ("choices",),
                f"must be a non-empty mapping of name -> parameters (or a list of names), but got {choices!r}",
            )
        if isinstance(choices, list):  # a bare list of names: no per-choice params
            if len(set(map(str, choices))) != len(choices):
                raise KeyPathError(("choices",), f"names must be distinct, but got {flow(choices)}")
            choices = {str(c): {} for c in choices}
        parsed = {str(name): _parse_params(p, ("choices", str(name))) for name, p in choices.items()}
        shared = {k: v for k, v in data.items() if k not in ("choices", "shared")}
        return {"choices": parsed, "shared": _parse_params(shared, ())}


def prep_models() -> dict[str, type[BaseModel]]:
    """Each registered modality's preprocessing settings model, by modality name."""
    from autofusion.modalities import MODALITIES

    return {name: mod.Prep for name, mod in MODALITIES.items()}


class DataSection(_Strict):
    """Where the manifest's columns are and how rows are split and checked."""

    columns: dict[str, Union[str, list[str]]] = Field(default_factory=dict)
    group: str | None = None  # a column whose rows stay in one split (a patient, a speaker, a reused file)
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.15, gt=0, lt=1)
    on_bad_rows: Literal["error", "skip"] = "error"
    allow_missing: list[str] = Field(default_factory=list)
    label_delimiter: str | None = None
    target: Literal["auto", "classification", "multilabel", "regression"] = "auto"

    @model_validator(mode="after")
    def _fractions(self) -> "DataSection":
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                "val_fraction + test_fraction must be < 0.9, but got "
                f"{self.val_fraction} + {self.test_fraction}"
            )
        return self


class SearchSettings(_Strict):
    """Defaults for the search; every one can be overridden by a CLI flag."""

    metric: str | None = None
    mode: Literal["min", "max"] | None = None
    sampler: Literal["tpe", "random", "cmaes", "gp", "nsga2"] = "tpe"
    scheduler: Literal["asha", "hyperband", "median", "fifo"] = "fifo"  # results, not timing, decide
    num_trials: int = Field(12, ge=1)
    max_epochs: int = Field(6, ge=1)
    grace_period: int = Field(1, ge=1)
    concurrency: int | None = Field(None, ge=1)
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    time_budget: float | None = Field(600.0, gt=0)  # seconds of trials; the best so far is kept
    objectives: list[str] = Field(default_factory=list)
    seed: int = 0
    trees: bool | None = None  # after the trials, the trees (LightGBM) and linear members; None: on
    bagging: Union[int, Literal["auto"]] = "auto"  # k-fold bagging of the search's model: folds, 0 (off) or auto

    @field_validator("bagging")
    @classmethod
    def _folds(cls, v: Any) -> Any:
        if v != "auto" and (isinstance(v, bool) or v == 1 or v < 0):
            raise ValueError(f"bagging is auto, 0 (off) or a number of folds >= 2, but got {v!r}")
        return v


class _ParamSection(_Strict):
    """A section whose every key is a constant or a distribution (types checked by the loader)."""

    @field_validator("*", mode="before")
    @classmethod
    def _param(cls, v: Any) -> Any:
        return parse_value(v)


AUGMENTATIONS = ("none", "light")


class TrainSection(_ParamSection):
    batch_size: Param = 32
    epochs: Param = None
    modality_dropout: Param = 0.0
    grad_clip: Param = 5.0
    amp: Param = True
    augment: Param = "none"
    align_weight: Param = None
    reconstruct_weight: Param = None
    missing: Param = None
    soup_k: Param = None
    patience: Param = None  # early stopping: epochs without improvement before a trial ends (None, 0: off)
    strategy: Param = None  # pretrained encoders: frozen (None), staged or finetune
    frozen_epochs: Param = None  # staged only: epochs on frozen outputs first (None: half the epochs)
    unfreeze_blocks: Param = 0  # staged only: the last N blocks are unfrozen (0: all)
    encoder_lr_factor: Param = 0.1  # staged and finetune only: encoder lr = optimizer.lr * this


# Training strategies (autofusion/train/): off, and left out of a trial's parameters, unless set,
# so a space without them samples the same configurations (and trial seeds) as before.
STRATEGY_KEYS = ("align_weight", "reconstruct_weight", "missing", "soup_k", "patience")
# How pretrained encoders train: sampled only where train.strategy asks for them (spaces.sample).
PRETRAINED_KEYS = ("strategy", "frozen_epochs", "unfreeze_blocks", "encoder_lr_factor")
# The train section's keys, in the order they are sampled (epochs last: it defaults to the budget).
TRAIN_KEYS = ("batch_size", "modality_dropout", "grad_clip", "amp", "augment", *STRATEGY_KEYS, *PRETRAINED_KEYS,
              "epochs")


class HeadSection(_ParamSection):
    hidden: Param = 128
    dropout: Param = 0.1


class SpaceFile(_Strict):
    """The whole search-space file."""

    task: str
    description: str = ""
    modalities: dict[str, dict[str, Any]]
    data: DataSection = Field(default_factory=DataSection)
    encoders: dict[str, ChoiceSection]
    fusion: ChoiceSection
    head: HeadSection = Field(default_factory=HeadSection)
    loss: ChoiceSection
    optimizer: ChoiceSection
    lr_schedule: ChoiceSection | None = None
    train: TrainSection = Field(default_factory=TrainSection)
    search: SearchSettings = Field(default_factory=SearchSettings)

    @field_validator("modalities", mode="before")
    @classmethod
    def _empty_prep(cls, v: Any) -> Any:
        # ``image:`` with nothing under it means "the defaults".
        return {k: ({} if s is None else s) for k, s in v.items()} if isinstance(v, dict) else v
