"""Checks of a parsed space file beyond its schema: each modality's preprocessing settings,
column roles, the search settings, and every component name and parameter against the
registries, where each component declares its parameters and their ranges
(``autofusion.components``). Every error names the key path and the value, on one line."""

from __future__ import annotations

from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from autofusion.components import NameOf, ParamSpec, Registry
from autofusion.errors import ConfigError
from autofusion.spaces.schema import (
    AUGMENTATIONS,
    TRAIN_KEYS,
    ChoiceSection,
    Distribution,
    SpaceFile,
    prep_models,
)
from autofusion.trial import MISSING_MODES, PAIR, STRATEGIES

# Shared (not per-choice) parameters each choice section accepts, with their types.
SHARED_PARAMS: dict[str, dict[str, type]] = {
    "fusion": {"weights": str},
    "loss": {"aux_weight": float},
    "optimizer": {"lr": float, "weight_decay": float},
    "lr_schedule": {"warmup_epochs": int},
    "encoder": {"share_weights": bool,  # False: each column of the modality gets its own encoder
                "layout": str},  # columns: one input per column; joined: the columns as one text
}
LAYOUTS = ("columns", "joined")

# Ranges of the parameters that no registry describes, checked on the constant, on each
# categorical choice and on both bounds of a range. None is allowed where listed.
VALUE_RULES: dict[str, tuple[type, Callable[[Any], bool], str, bool]] = {
    "optimizer.lr": (float, lambda v: v > 0, "the learning rate must be > 0", False),
    "optimizer.weight_decay": (float, lambda v: v >= 0, "must be >= 0", False),
    "loss.aux_weight": (float, lambda v: v >= 0, "must be >= 0", False),
    "lr_schedule.warmup_epochs": (int, lambda v: v >= 0, "must be >= 0", False),
    "head.hidden": (int, lambda v: v >= 1, "must be >= 1", False),
    "head.dropout": (float, lambda v: 0 <= v < 1, "must be >= 0 and < 1", False),
    "train.batch_size": (None, lambda v: v == "auto" or (_is_int(v) and v >= 1),
                         "must be a whole number >= 1 or auto (from the number of training rows)", False),
    "train.epochs": (int, lambda v: v >= 1, "must be >= 1 (leave it out to use search.max_epochs)", True),
    "train.modality_dropout": (float, lambda v: 0 <= v < 1, "must be >= 0 and < 1", False),
    "train.grad_clip": (float, lambda v: v >= 0, "must be >= 0 (0 turns clipping off)", True),
    "train.amp": (bool, lambda v: True, "", False),
    "train.augment": (str, lambda v: v in AUGMENTATIONS, f"must be one of {', '.join(AUGMENTATIONS)}", False),
    "train.align_weight": (float, lambda v: v >= 0, "must be >= 0 (0 turns it off)", True),
    "train.reconstruct_weight": (float, lambda v: v >= 0, "must be >= 0 (0 turns it off)", True),
    "train.missing": (str, lambda v: v in MISSING_MODES, f"must be one of {', '.join(MISSING_MODES)}", True),
    "train.soup_k": (int, lambda v: 0 <= v <= 16, "must be >= 0 and <= 16 (0 or 1 turns it off)", True),
    "train.patience": (int, lambda v: v >= 0, "must be >= 0 (0 turns early stopping off)", True),
    "train.strategy": (str, lambda v: v in STRATEGIES, f"must be one of {', '.join(STRATEGIES)}", True),
    "train.frozen_epochs": (int, lambda v: v >= 1, "must be >= 1 (leave it out for half the epochs)", True),
    "train.unfreeze_blocks": (int, lambda v: v >= 0, "must be >= 0 (0 unfreezes every block)", False),
    "train.encoder_lr_factor": (float, lambda v: 0 < v <= 1, "must be > 0 and <= 1", False),
}



def validate(parsed: SpaceFile, describe: Callable[[ValidationError, type[BaseModel]], str]) -> dict[str, BaseModel]:
    """Every check; returns the validated preprocessing settings per modality."""
    prep = _validate_prep(parsed, describe)
    _validate_data(parsed)
    _validate_names(parsed)
    _validate_values(parsed)
    _validate_search(parsed)
    return prep


def _validate_prep(parsed: SpaceFile, describe: Callable[[ValidationError, type[BaseModel]], str]
                   ) -> dict[str, BaseModel]:
    if not parsed.modalities:
        raise ConfigError("modalities: at least one modality is needed")
    models = prep_models()
    prep: dict[str, BaseModel] = {}
    for name, settings in parsed.modalities.items():
        if name not in models:
            raise ConfigError(f"modalities.{name}: unknown modality; known: {', '.join(models)}")
        try:
            prep[name] = models[name].model_validate(settings or {})
        except ValidationError as exc:
            raise ConfigError(f"modalities.{name}.{describe(exc, models[name])}") from None
    missing = [m for m in parsed.modalities if m not in parsed.encoders]
    extra = [m for m in parsed.encoders if m not in parsed.modalities]
    if missing:
        raise ConfigError(f"encoders: no encoder choices for modality {missing[0]!r}")
    if extra:
        raise ConfigError(
            f"encoders.{extra[0]}: not one of the file's modalities ({', '.join(parsed.modalities)})"
        )
    return prep


def _validate_data(parsed: SpaceFile) -> None:
    from autofusion.data.manifest import OTHER_ROLES

    mods = list(parsed.modalities)
    models = prep_models()
    roles = [r for r in (*models, *OTHER_ROLES) if r in mods or r not in models]
    for role in parsed.data.columns:
        if role not in roles:
            raise ConfigError(f"data.columns.{role}: unknown role; known for this file: {', '.join(roles)}")
    for m in parsed.data.allow_missing:
        if m not in mods:
            raise ConfigError(
                f"data.allow_missing: {m!r} is not one of the file's modalities ({', '.join(mods)})"
            )


def _validate_search(parsed: SpaceFile) -> None:
    s, target = parsed.search, parsed.data.target
    if s.metric is not None:
        from autofusion.metrics import METRICS

        targets = list(METRICS) if target == "auto" else [target]
        known = list(dict.fromkeys(f"val_{m}" for t in targets for m in METRICS[t]))
        if s.metric not in known:
            kind = "any target" if target == "auto" else f"{target} targets"
            raise ConfigError(f"search.metric: unknown metric {s.metric!r} for {kind}; known: {', '.join(known)}")
    if s.objectives:
        from autofusion.metrics import EXTRA_OBJECTIVES

        for o in s.objectives:
            if o not in EXTRA_OBJECTIVES:
                raise ConfigError(f"search.objectives: unknown objective {o!r}; known: {', '.join(EXTRA_OBJECTIVES)}")


def _validate_values(parsed: SpaceFile) -> None:
    """Types and ranges of the shared, head and train parameters (see VALUE_RULES)."""
    f = parsed
    found = {
        "optimizer.lr": f.optimizer.shared.get("lr"),
        "optimizer.weight_decay": f.optimizer.shared.get("weight_decay"),
        "loss.aux_weight": f.loss.shared.get("aux_weight"),
        "lr_schedule.warmup_epochs": f.lr_schedule.shared.get("warmup_epochs") if f.lr_schedule else None,
        **{f"head.{k}": getattr(f.head, k) for k in ("hidden", "dropout")},
        **{f"train.{k}": getattr(f.train, k) for k in TRAIN_KEYS},
    }
    if "lr" not in f.optimizer.shared:
        raise ConfigError("optimizer.lr: missing key; give a learning rate or a range")
    for where, param in found.items():
        expected, ok, rule, none_ok = VALUE_RULES[where]
        if isinstance(param, Distribution) and param.type == "float" and expected is int:
            raise ConfigError(f"{where}: an integer parameter needs type int or categorical, but got type float")
        for v in _values(param):
            if v is None and none_ok:
                continue
            _check_type(where, v, expected)
            if not ok(v):
                raise ConfigError(f"{where}: {rule}, but got {v!r}")


def _validate_names(parsed: SpaceFile) -> None:
    # Imported here: filling the registries imports torch, which `spaces list` doesn't need.
    from autofusion.models import ENCODERS, FUSIONS
    from autofusion.models.losses import LOSSES
    from autofusion.train.optim import OPTIMIZERS, SCHEDULES

    for modality, section in parsed.encoders.items():
        _check_section(f"encoders.{modality}", section, ENCODERS[modality], "encoder", parsed)
    _check_section("fusion", parsed.fusion, FUSIONS, "fusion", parsed)
    _check_section("loss", parsed.loss, LOSSES, "loss", parsed)
    _check_section("optimizer", parsed.optimizer, OPTIMIZERS, "optimizer", parsed)
    if parsed.lr_schedule is not None:
        _check_section("lr_schedule", parsed.lr_schedule, SCHEDULES, "lr_schedule", parsed)
    weights = parsed.fusion.shared.get("weights")
    from autofusion.models.base import ModalityWeights

    for w in _values(weights):
        if w not in ModalityWeights.MODES:
            raise ConfigError(
                f"fusion.weights: unknown fusion weights {w!r}; known: {', '.join(ModalityWeights.MODES)}"
            )
    target = parsed.data.target
    if target != "auto":
        from autofusion.models.losses import losses_for

        for name in parsed.loss.choices:
            if target not in LOSSES.get(name).targets:
                raise ConfigError(
                    f"loss.choices.{name}: does not fit data.target {target!r}; "
                    f"use one of: {', '.join(losses_for(target))}"
                )


def _values(param: Any) -> list[Any]:
    """The values a parameter can take that can be checked (choices, bounds or the constant)."""
    if param is None:
        return []
    if isinstance(param, Distribution):
        if param.type == "categorical":
            return list(param.choices or [])
        return [param.low, param.high]
    return [param]


def _domain(spec: ParamSpec, parsed: SpaceFile) -> list[str] | None:
    """The names a string parameter must be one of, when it declares ``NameOf(...)``."""
    marker = next((m for m in spec.metadata() if isinstance(m, NameOf)), None)
    if marker is None:
        return None
    if marker.what == "modality":
        return list(parsed.modalities)
    from autofusion.models import ENCODERS

    return ENCODERS[marker.what].names()  # e.g. the image encoders a video's frame encoder may be


def _check_section(where: str, section: ChoiceSection, registry: Registry, kind: str, parsed: SpaceFile) -> None:
    shared_ok = SHARED_PARAMS["encoder" if kind == "encoder" else where]
    for key in section.shared:
        if key not in shared_ok:
            known = ", ".join(["choices", *shared_ok]) or "choices"
            raise ConfigError(f"{where}.{key}: unknown key; known: {known}")
        for v in _values(section.shared[key]):
            _check_type(f"{where}.{key}", v, shared_ok[key])
            if key == "layout" and v not in LAYOUTS:
                raise ConfigError(f"{where}.layout: must be one of {', '.join(LAYOUTS)}, but got {v!r}")
            if key == "layout" and v == "joined" and not _joinable(where.rsplit(".", 1)[-1]):
                raise ConfigError(f"{where}.layout: only text columns can be joined, but got {v!r}")
    for name, params in section.choices.items():
        if kind == "encoder" and PAIR in name:  # two encoders on one input (models/encoders/pair.py)
            _check_pair(f"{where}.choices.{name}", name, params, section, registry)
            continue
        try:
            specs = registry.param_specs(name)
        except ConfigError as exc:
            raise ConfigError(f"{where}.choices.{name}: {exc}") from None
        fixed = getattr(registry.get(name), "feature_params", ())
        check = getattr(registry.get(name), "check_params", None)  # e.g. a pretrained encoder's model
        problem = check(params) if check is not None else None
        if problem:
            raise ConfigError(f"{where}.choices.{name}.{problem}")
        for pname, pval in params.items():
            key = f"{where}.choices.{name}.{pname}"
            if pname not in specs:
                known = ", ".join(specs) or "none"
                raise ConfigError(f"{key}: unknown parameter of {kind} {name!r}; known: {known}")
            spec = specs[pname]
            if pname in fixed and isinstance(pval, Distribution):
                raise ConfigError(f"{key}: a preprocessing parameter (computed once before the trials) cannot be "
                                  f"searched; set one value, but got {pval.type} {_shown(pval)}")
            if isinstance(pval, Distribution) and spec.base_type is int and pval.type == "float":
                raise ConfigError(f"{key}: an integer parameter needs type int or categorical, but got type float")
            domain = _domain(spec, parsed)
            for v in _values(pval):
                problem = spec.check(v)
                if problem is None and domain is not None and v is not None and v not in domain:
                    problem = f"{v!r} is not one of: {', '.join(domain)}"
                if problem:
                    raise ConfigError(f"{key}: {problem}")


def _joinable(modality: str) -> bool:
    from autofusion.modalities import MODALITIES

    return modality in MODALITIES and bool(MODALITIES.get(modality).joinable)


def _check_pair(where: str, name: str, params: dict, section: ChoiceSection, registry: Registry) -> None:
    from autofusion.models.encoders.pair import pair_problem

    problem = pair_problem(name, params, section.choices, registry)
    if problem:
        raise ConfigError(f"{where}: {problem}")


def _shown(d: Distribution) -> str:
    return str(d.choices) if d.type == "categorical" else f"[{d.low}, {d.high}]"


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer()


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
