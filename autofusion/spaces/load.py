"""Loading and validating search-space files.

Validation happens in two layers: the pydantic schema (types, ranges, unknown keys) and
a check against the registries (encoder, fusion, loss, optimizer and schedule names and
each one's parameter names and types). Every error names the file, the key path and the
value, on one line; the schema's problems are all listed.

A file may start from another (``extends: image_text``, or a path relative to it) and
change only what it names: mappings merge key by key (a distribution given with its
``type`` replaces the old one whole), anything else replaces, and ``null`` removes what
the base has.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from autofusion.errors import ConfigError
from autofusion.spaces.pretrained import offer
from autofusion.spaces.schema import ChoiceSection, Param, SpaceFile, error_parts
from autofusion.spaces.validate import validate

SPACES_DIR = Path(__file__).resolve().parent.parent / "search_spaces"
MAX_PROBLEMS = 12  # schema problems listed in one error


@dataclass(frozen=True)
class Space:
    """A validated space file.

    Attributes:
        file: the parsed file.
        path: where it was read from.
        prep: per-modality preprocessing settings, validated.
        text: the complete space as YAML when it is not the file's own text (a file that
            ``extends`` another: the merged result, logged with the search).
    """

    file: SpaceFile
    path: Path
    prep: dict[str, BaseModel]
    text: str = ""

    @property
    def task(self) -> str:
        return self.file.task

    @property
    def modalities(self) -> list[str]:
        return list(self.file.modalities)

    def raw_text(self) -> str:
        """The space as YAML: the file, or the merged result of a file that extends another."""
        return self.text or self.path.read_text(encoding="utf-8")


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
    raw, base = read_space(path)
    offered = offer(raw) if path.parent == SPACES_DIR else raw  # + the pretrained encoders found here
    where = f"{path} (extends {base})" if base else str(path)
    try:
        parsed = SpaceFile.model_validate(offered)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_describe(exc)}{_partial_hint(exc, base)}") from None
    try:
        prep = validate(parsed, describe=_describe)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if task is not None and space is not None and parsed.task != task:
        raise ConfigError(
            f"{where}: task {parsed.task!r} in the file does not match --task {task!r}"
        )
    text = ""
    if base or offered is not raw:
        how = f"extends {base}" if base else "with the pretrained encoders found here (spaces/pretrained.py)"
        text = (f"# {path.name} {how}: the complete space it gives\n"
                + yaml.safe_dump(offered, sort_keys=False, default_flow_style=None, width=110))
    return Space(file=parsed, path=path, prep=prep, text=text)


def with_target(space: Space, target: str | None) -> Space:
    """``space`` with ``data.target`` set to ``target`` (``--target``), checked like the file
    (its losses and metric must fit that target); unchanged when ``target`` is None."""
    if target is None or space.file.data.target == target:
        return space
    parsed = space.file.model_copy(update={"data": space.file.data.model_copy(update={"target": target})})
    try:
        validate(parsed, describe=_describe)
    except ConfigError as exc:
        raise ConfigError(f"--target {target}: {space.path}: {exc}") from None
    note = f"# data.target: {target} (set by --target)\n"
    return dataclasses.replace(space, file=parsed, text=note + space.raw_text())


def read_space(path: Path, seen: tuple[Path, ...] = ()) -> tuple[dict, str | None]:
    """The file's mapping, merged over the space it ``extends`` (if any), and that base's name."""
    raw = _read_mapping(path)
    if "extends" not in raw:
        return raw, None
    name = raw.pop("extends")
    base_path = _base_path(path, name)
    if base_path.resolve() in seen or base_path.resolve() == path.resolve():
        raise ConfigError(f"{path}: extends: {name!r} extends this file again (a cycle)")
    base_raw, _ = read_space(base_path, (*seen, path.resolve()))
    return merge_space(base_raw, raw), str(name)


def _base_path(path: Path, name: object) -> Path:
    """The file ``extends: name`` means: a built-in space, or a file relative to ``path``."""
    known = ", ".join(builtin_tasks())
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{path}: extends: must name a built-in space ({known}) or a space file, but got {name!r}")
    if name in builtin_tasks():
        return SPACES_DIR / f"{name}.yaml"
    candidate = path.parent / name
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    raise ConfigError(f"{path}: extends: unknown space {name!r}; known: {known}, or a .yaml file beside this one")


def merge_space(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``: mappings merge key by key (a distribution given with its
    ``type`` replaces the old one whole), anything else replaces, and ``None`` removes."""
    out = dict(base)
    for key, value in over.items():
        if value is None and key in out:
            del out[key]
        elif isinstance(value, dict) and isinstance(out.get(key), dict) and "type" not in value:
            out[key] = merge_space(out[key], value)
        else:
            out[key] = value
    return out


def _partial_hint(exc: ValidationError, base: str | None) -> str:
    """A hint for a file that lacks required sections: it may start from a built-in space."""
    missing = [e["loc"][0] for e in exc.errors() if e["type"] == "missing" and len(e["loc"]) == 1]
    if base or not (len(missing) > 1 or "task" in missing):
        return ""
    return f" (a file that changes a built-in space can start with `extends: NAME`, NAME one of {', '.join(builtin_tasks())})"


def _read_mapping(path: Path) -> dict:
    """A space file's YAML as a mapping; every reading problem is one line naming the file."""
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
    return raw


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
    """One line listing every pydantic error (up to ``MAX_PROBLEMS``): key path, rule and
    value; an unknown key close to an allowed one (a typo) gets a "did you mean"."""
    problems: list[str] = []
    for err in exc.errors():
        loc, msg = error_parts(err)
        if msg.startswith("unknown key") and loc:
            close = difflib.get_close_matches(loc[-1], _allowed_keys(root, loc[:-1]), n=1, cutoff=0.7)
            if close:
                msg = msg.replace("unknown key", f"unknown key; did you mean {close[0]!r}?", 1)
        line = f"{'.'.join(loc) or 'top level'}: {msg}"
        if line not in problems:
            problems.append(line)
    more = f"; and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
    return "; ".join(problems[:MAX_PROBLEMS]) + more


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


