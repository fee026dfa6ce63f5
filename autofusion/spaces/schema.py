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
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Distribution(_Strict):
    """One searchable hyper-parameter.

    ``float``: uniform on [low, high], log-uniform with ``log: true``, quantised with
    ``step``. ``int``: integers in [low, high] (inclusive), optional ``step`` or ``log``.
    ``categorical``: one of ``choices``.
    """

    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Scalar] | None = None

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if isinstance(data, dict) and "type" in data:
            kind = data["type"]
            if kind not in DIST_ALIASES:
                raise ValueError(
                    f"unknown distribution type {kind!r}; known: {', '.join(DIST_ALIASES)}"
                )
            base, extra = DIST_ALIASES[kind]
            data = {**extra, **data, "type": base}
        return data

    @model_validator(mode="after")
    def _check(self) -> "Distribution":
        if self.type == "categorical":
            if self.low is not None or self.high is not None or self.step is not None:
                raise ValueError("categorical takes 'choices', not low/high/step")
            if not self.choices:
                raise ValueError("categorical needs a non-empty 'choices' list")
            if len(set(map(repr, self.choices))) != len(self.choices):
                raise ValueError(f"choices must be distinct, got {self.choices}")
            return self
        if self.choices is not None:
            raise ValueError(f"{self.type} takes low/high, not 'choices'")
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs both 'low' and 'high'")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("low and high must be finite numbers")
        if self.low > self.high:
            raise ValueError(f"low <= high must hold, but got (low={self.low}, high={self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, but got low={self.low}")
        if self.log and self.step is not None:
            raise ValueError("'step' and 'log: true' cannot be combined")
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


def _parse_params(raw: Any, where: str) -> dict[str, Param]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a mapping of parameter -> value or distribution")
    out: dict[str, Param] = {}
    for key, val in raw.items():
        if not isinstance(key, str):
            raise ValueError(f"{where}: parameter names must be strings, got {key!r}")
        out[key] = Distribution.model_validate(val) if isinstance(val, dict) else val
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
            raise ValueError("must be a mapping with a 'choices' key")
        if "choices" not in data:
            raise ValueError("missing key 'choices'")
        choices = data["choices"]
        if isinstance(choices, list):  # a bare list of names: no per-choice params
            choices = {str(c): {} for c in choices}
        if not isinstance(choices, dict) or not choices:
            raise ValueError("'choices' must be a non-empty mapping of name -> parameters")
        parsed = {str(name): _parse_params(p, f"choices.{name}") for name, p in choices.items()}
        shared = {k: v for k, v in data.items() if k not in ("choices", "shared")}
        return {"choices": parsed, "shared": _parse_params(shared, "section")}


class ImagePrep(_Strict):
    size: int = Field(64, ge=8, le=1024)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


class TextPrep(_Strict):
    max_length: int = Field(32, ge=1, le=4096)
    max_vocab: int = Field(20000, ge=10)
    min_freq: int = Field(1, ge=1)
    lowercase: bool = True


class AudioPrep(_Strict):
    sample_rate: int = Field(16000, ge=1000, le=192000)
    seconds: float = Field(2.0, gt=0, le=600)


class VideoPrep(_Strict):
    frames: int = Field(8, ge=1, le=256)
    size: int = Field(64, ge=8, le=512)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


PREP_MODELS: dict[str, type[_Strict]] = {
    "image": ImagePrep,
    "text": TextPrep,
    "audio": AudioPrep,
    "video": VideoPrep,
}


class DataSection(_Strict):
    """Where the manifest's columns are and how rows are split and checked."""

    columns: dict[str, str] = Field(default_factory=dict)
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
    scheduler: Literal["asha", "hyperband", "median", "fifo"] = "asha"
    num_trials: int = Field(12, ge=1)
    max_epochs: int = Field(6, ge=1)
    grace_period: int = Field(1, ge=1)
    concurrency: int | None = Field(None, ge=1)
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    time_budget: float | None = Field(None, gt=0)
    objectives: list[str] = Field(default_factory=list)
    seed: int = 0


class TrainSection(_Strict):
    batch_size: Param = 32
    epochs: Param = None
    modality_dropout: Param = 0.0
    grad_clip: Param = 5.0
    amp: Param = True


class HeadSection(_Strict):
    hidden: Param = 128
    dropout: Param = 0.1

    @field_validator("hidden", "dropout", mode="before")
    @classmethod
    def _dist(cls, v: Any) -> Any:
        return Distribution.model_validate(v) if isinstance(v, dict) else v


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

    @field_validator("train", mode="before")
    @classmethod
    def _train_dists(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: Distribution.model_validate(x) if isinstance(x, dict) else x for k, x in v.items()}
        return v
