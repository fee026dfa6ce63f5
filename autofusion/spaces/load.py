"""Loading and validating search-space files.

Validation happens in two layers: the pydantic schema (types, ranges, unknown keys) and
a check against the registries (encoder, fusion, loss, optimizer and schedule names and
each one's parameter names and types). Every error names the file, the key path and the
value, on one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from autofusion.errors import ConfigError
from autofusion.registry import Registry
from autofusion.spaces.schema import (
    PREP_MODELS,
    ChoiceSection,
    Distribution,
    SpaceFile,
)

SPACES_DIR = Path(__file__).resolve().parent.parent / "search_spaces"

# Shared (not per-choice) parameters each choice section accepts, with their types.
SHARED_PARAMS: dict[str, dict[str, type]] = {
    "fusion": {"weights": str},
    "loss": {"aux_weight": float},
    "optimizer": {"lr": float, "weight_decay": float},
    "lr_schedule": {"warmup_epochs": int},
    "encoder": {},
}


@dataclass(frozen=True)
class Space:
    """A validated space file.

    Attributes:
        file: the parsed file.
        path: where it was read from.
        prep: per-modality preprocessing settings, validated.
    """

    file: SpaceFile
    path: Path
    prep: dict[str, BaseModel]

    @property
    def task(self) -> str:
        return self.file.task

    @property
    def modalities(self) -> list[str]:
        return list(self.file.modalities)

    def raw_text(self) -> str:
        return self.path.read_text(encoding="utf-8")


def builtin_tasks() -> list[str]:
    """Names of the space files shipped in ``search_spaces/``."""
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def resolve_space_path(task: str | None, space: str | Path | None) -> Path:
    """The file to load: ``space`` if given, else the built-in file of ``task``."""
    if space is not None:
        path = Path(space)
        if not path.is_file():
            raise ConfigError(f"space file {str(path)!r} does not exist")
        return path
    if task is None:
        raise ConfigError("give --task or --space")
    path = SPACES_DIR / f"{task}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown task {task!r}; known: {', '.join(builtin_tasks())}")
    return path


def load_space(task: str | None = None, space: str | Path | None = None) -> Space:
    """Reads, parses and validates a space file (a task's built-in one by default)."""
    path = resolve_space_path(task, space)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML: {where}{problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a space file must be a YAML mapping, got {type(raw).__name__}")
    try:
        parsed = SpaceFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from None
    try:
        prep = _validate_prep(parsed)
        _validate_names(parsed)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if task is not None and space is not None and parsed.task != task:
        raise ConfigError(
            f"{path}: task {parsed.task!r} in the file does not match --task {task!r}"
        )
    return Space(file=parsed, path=path, prep=prep)


def _describe(exc: ValidationError) -> str:
    """One line for the first pydantic error: key path, rule and value."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    value = err.get("input")
    shown = "" if isinstance(value, dict) or err["type"] == "missing" else f" (got {value!r})"
    more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    return f"{loc or 'top level'}: {msg}{shown}{more}"


def _validate_prep(parsed: SpaceFile) -> dict[str, BaseModel]:
    if not parsed.modalities:
        raise ConfigError("modalities: at least one modality is needed")
    prep: dict[str, BaseModel] = {}
    for name, settings in parsed.modalities.items():
        if name not in PREP_MODELS:
            raise ConfigError(
                f"modalities.{name}: unknown modality; known: {', '.join(PREP_MODELS)}"
            )
        try:
            prep[name] = PREP_MODELS[name].model_validate(settings or {})
        except ValidationError as exc:
            raise ConfigError(f"modalities.{name}.{_describe(exc)}") from None
    missing = [m for m in parsed.modalities if m not in parsed.encoders]
    extra = [m for m in parsed.encoders if m not in parsed.modalities]
    if missing:
        raise ConfigError(f"encoders: no encoder choices for modality {missing[0]!r}")
    if extra:
        raise ConfigError(
            f"encoders.{extra[0]}: not one of the file's modalities ({', '.join(parsed.modalities)})"
        )
    return prep


def _validate_names(parsed: SpaceFile) -> None:
    # Imported here: filling the registries imports torch, which `spaces list` doesn't need.
    from autofusion.models import ENCODERS, FUSIONS
    from autofusion.models.losses import LOSSES
    from autofusion.optim import OPTIMIZERS, SCHEDULES

    for modality, section in parsed.encoders.items():
        _check_section(f"encoders.{modality}", section, ENCODERS[modality], "encoder")
    _check_section("fusion", parsed.fusion, FUSIONS, "fusion")
    _check_section("loss", parsed.loss, LOSSES, "loss")
    _check_section("optimizer", parsed.optimizer, OPTIMIZERS, "optimizer")
    if parsed.lr_schedule is not None:
        _check_section("lr_schedule", parsed.lr_schedule, SCHEDULES, "lr_schedule")
    weights = parsed.fusion.shared.get("weights")
    from autofusion.models.base import ModalityWeights

    for w in _values(weights):
        if w not in ModalityWeights.MODES:
            raise ConfigError(
                f"fusion.weights: unknown fusion weights {w!r}; known: {', '.join(ModalityWeights.MODES)}"
            )
    for key in ("lr", "weight_decay"):
        for v in _values(parsed.optimizer.shared.get(key)):
            if key == "lr" and (not isinstance(v, (int, float)) or v <= 0):
                raise ConfigError(f"optimizer.lr: the learning rate must be > 0, but got {v!r}")
            if key == "weight_decay" and (not isinstance(v, (int, float)) or v < 0):
                raise ConfigError(f"optimizer.weight_decay: must be >= 0, but got {v!r}")
    if "lr" not in parsed.optimizer.shared:
        raise ConfigError("optimizer.lr: missing; give a learning rate or a range")


def _values(param: Any) -> list[Any]:
    """The values a parameter can take that can be checked (choices, bounds or the constant)."""
    if param is None:
        return []
    if isinstance(param, Distribution):
        if param.type == "categorical":
            return list(param.choices or [])
        return [param.low, param.high]
    return [param]


def _check_section(where: str, section: ChoiceSection, registry: Registry, kind: str) -> None:
    shared_ok = SHARED_PARAMS["encoder" if kind == "encoder" else where]
    for key in section.shared:
        if key not in shared_ok:
            known = ", ".join(["choices", *shared_ok]) or "choices"
            raise ConfigError(f"{where}.{key}: unknown key; known: {known}")
        for v in _values(section.shared[key]):
            _check_type(f"{where}.{key}", v, shared_ok[key])
    for name, params in section.choices.items():
        try:
            accepted = registry.params(name)
        except ConfigError as exc:
            raise ConfigError(f"{where}.choices.{name}: {exc}") from None
        for pname, pval in params.items():
            if pname not in accepted:
                known = ", ".join(accepted) or "none"
                raise ConfigError(
                    f"{where}.choices.{name}.{pname}: unknown parameter of {kind} {name!r}; known: {known}"
                )
            default = accepted[pname]
            for v in _values(pval):
                _check_type(f"{where}.choices.{name}.{pname}", v, type(default) if default is not None else None)
            if isinstance(pval, Distribution) and isinstance(default, int) and not isinstance(default, bool):
                if pval.type == "float":
                    raise ConfigError(
                        f"{where}.choices.{name}.{pname}: an integer parameter needs type int or categorical, got float"
                    )


def _check_type(where: str, value: Any, expected: type | None) -> None:
    if expected is None or value is None:
        return
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer(),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
    }.get(expected, lambda v: True)(value)
    if not ok:
        raise ConfigError(f"{where}: expected {expected.__name__}, but got {value!r}")
