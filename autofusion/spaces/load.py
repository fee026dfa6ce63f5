"""Loading and validating search-space files.

Validation happens in two layers: the pydantic schema (types, ranges, unknown keys) and
a check against the registries (encoder, fusion, loss, optimizer and schedule names and
each one's parameter names and types). Every error names the file, the key path and the
value, on one line.
"""

from __future__ import annotations

import difflib
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from autofusion.errors import ConfigError
from autofusion.registry import Registry
from autofusion.spaces.schema import (
    AUGMENTATIONS,
    TRAIN_KEYS,
    PREP_MODELS,
    ChoiceSection,
    Distribution,
    Param,
    SpaceFile,
    error_parts,
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

# Ranges of the parameters that no registry describes, checked on the constant, on each
# categorical choice and on both bounds of a range. None is allowed where listed.
VALUE_RULES: dict[str, tuple[type, Callable[[Any], bool], str, bool]] = {
    "optimizer.lr": (float, lambda v: v > 0, "the learning rate must be > 0", False),
    "optimizer.weight_decay": (float, lambda v: v >= 0, "must be >= 0", False),
    "loss.aux_weight": (float, lambda v: v >= 0, "must be >= 0", False),
    "lr_schedule.warmup_epochs": (int, lambda v: v >= 0, "must be >= 0", False),
    "head.hidden": (int, lambda v: v >= 1, "must be >= 1", False),
    "head.dropout": (float, lambda v: 0 <= v < 1, "must be >= 0 and < 1", False),
    "train.batch_size": (int, lambda v: v >= 1, "must be >= 1", False),
    "train.epochs": (int, lambda v: v >= 1, "must be >= 1 (leave it out to use search.max_epochs)", True),
    "train.modality_dropout": (float, lambda v: 0 <= v < 1, "must be >= 0 and < 1", False),
    "train.grad_clip": (float, lambda v: v >= 0, "must be >= 0 (0 turns clipping off)", True),
    "train.amp": (bool, lambda v: True, "", False),
    "train.augment": (str, lambda v: v in AUGMENTATIONS, f"must be one of {', '.join(AUGMENTATIONS)}", False),
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
            raise ConfigError(
                f"space file {str(path)!r} does not exist; check the path, or start from a built-in one: "
                "autofusion spaces show TASK > my_space.yaml"
            )
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
        text = path.read_text(encoding="utf-8")
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        # The problem is often found a line after the cause (an unclosed bracket): say where it opened.
        context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and cmark is not None and (mark is None or cmark.line != mark.line):
            problem += f" ({context} that starts at line {cmark.line + 1}, column {cmark.column + 1})"
        if isinstance(exc, yaml.constructor.ConstructorError):  # !!python/object and other unsafe tags
            problem += "; a space file holds plain values only: remove the tag"
        raise ConfigError(f"{path}: invalid YAML: {where}{problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    dup = _duplicate_key(text)
    if dup is not None:
        raise ConfigError(f"{path}: {dup}")
    if raw is None:
        raise ConfigError(f"{path}: the file is empty; a space file is a YAML mapping (task, modalities, ...)")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: a space file must be a YAML mapping (task, modalities, ...), but got a "
            f"{type(raw).__name__}: {raw!r:.80}"
        )
    try:
        parsed = SpaceFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from None
    try:
        prep = _validate_prep(parsed)
        _validate_data(parsed)
        _validate_names(parsed)
        _validate_values(parsed)
        _validate_search(parsed)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if task is not None and space is not None and parsed.task != task:
        raise ConfigError(
            f"{path}: task {parsed.task!r} in the file does not match --task {task!r}"
        )
    return Space(file=parsed, path=path, prep=prep)


def _duplicate_key(text: str) -> str | None:
    """Where a mapping repeats a key: safe_load keeps the last silently, so a second
    ``attention:`` entry would replace the first unnoticed."""
    seen_nodes: set[int] = set()

    def walk(node: yaml.Node, keys: tuple[str, ...]) -> str | None:
        if id(node) in seen_nodes:  # an alias of a node already walked
            return None
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for k, v in node.value:
                name = str(k.value) if isinstance(k, yaml.ScalarNode) else "?"
                if isinstance(k, yaml.ScalarNode) and name != "<<":
                    if name in seen:
                        where = ".".join((*keys, name))
                        return (f"{where}: duplicate key at line {k.start_mark.line + 1}, column "
                                f"{k.start_mark.column + 1}; only the last would count")
                    seen.add(name)
                found = walk(v, (*keys, name))
                if found:
                    return found
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                found = walk(v, (*keys, str(i)))
                if found:
                    return found
        return None

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    return walk(root, ()) if root is not None else None


def _describe(exc: ValidationError, root: type[BaseModel] = SpaceFile) -> str:
    """One line for the first pydantic error: key path, rule and value; an unknown key
    close to an allowed one (a typo) gets a "did you mean"."""
    loc, msg = error_parts(exc.errors()[0])
    if msg.startswith("unknown key") and loc:
        close = difflib.get_close_matches(loc[-1], _allowed_keys(root, loc[:-1]), n=1, cutoff=0.7)
        if close:
            msg = msg.replace("unknown key", f"unknown key; did you mean {close[0]!r}?", 1)
    more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    return f"{'.'.join(loc) or 'top level'}: {msg}{more}"


def _allowed_keys(root: Any, keys: tuple[str, ...]) -> list[str]:
    """The keys the schema allows below the key path ``keys`` (empty where it cannot tell)."""

    def model_in(tp: Any) -> Any:  # the model or dict inside an Optional/Union annotation
        if get_origin(tp) in (Union, types.UnionType):
            return next((a for a in get_args(tp) if _is_model(a) or get_origin(a) is dict), None)
        return tp

    tp = root
    for key in keys:
        tp = model_in(tp)
        if _is_model(tp):
            field = tp.model_fields.get(key)
            if field is None and tp is ChoiceSection:  # a shared parameter (optimizer.lr)
                tp = Param
                continue
            if field is None:
                return []
            tp = field.annotation
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        else:
            return []
    tp = model_in(tp)
    return list(tp.model_fields) if _is_model(tp) else []


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


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
            raise ConfigError(f"modalities.{name}.{_describe(exc, PREP_MODELS[name])}") from None
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
    from autofusion.data.manifest import ROLES

    mods = list(parsed.modalities)
    roles = [r for r in ROLES if r in mods or r not in PREP_MODELS]
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
        from autofusion.search import EXTRA_OBJECTIVES

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
    from autofusion.optim import OPTIMIZERS, SCHEDULES

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


def _name_domains(kind: str, parsed: SpaceFile) -> dict[str, list[str]]:
    """String parameters whose values must name something the file or a registry knows."""
    if kind == "fusion":
        return {"target": list(parsed.modalities)}  # film: the modality that is modulated
    if kind == "encoder":
        from autofusion.models import ENCODERS

        return {"frame_encoder": ENCODERS["image"].names()}  # video: the per-frame CNN
    return {}


def _check_section(
    where: str, section: ChoiceSection, registry: Registry, kind: str, parsed: SpaceFile
) -> None:
    shared_ok = SHARED_PARAMS["encoder" if kind == "encoder" else where]
    domains = _name_domains(kind, parsed)
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
            key = f"{where}.choices.{name}.{pname}"
            is_int = isinstance(default, int) and not isinstance(default, bool)
            if isinstance(pval, Distribution) and is_int and pval.type == "float":
                raise ConfigError(f"{key}: an integer parameter needs type int or categorical, but got type float")
            for v in _values(pval):
                _check_type(key, v, type(default) if default is not None else None)
                if is_int and v < 0:
                    raise ConfigError(f"{key}: must be >= 0, but got {v!r}")
                if pname in domains and v not in domains[pname]:
                    raise ConfigError(f"{key}: {v!r} is not one of: {', '.join(domains[pname])}")


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
