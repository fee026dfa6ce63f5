"""A search space assembled from the data, for ``autofusion search --data my.csv`` without
--task or --space (and ``autofusion spaces show --data my.csv``).

The manifest's modalities are found by the column finder every search uses
(``resolve_columns``, here over every registered modality, ``--columns`` for what it cannot
tell); the space is the shared sections (``search_spaces/auto/common.yaml``), the target
kind's losses and metric (``classification.yaml``, ``regression.yaml``, ``multilabel.yaml``)
and, for each modality found, its preprocessing and encoder choices (``image.yaml``,
``tabular.yaml``, ...: one file per modality), merged like ``extends`` and validated by the
same loader as any space file. Its task name, which names the MLflow experiment and the
registered model, comes from the data (or ``--name``).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from autofusion.data.labels import log_target, parse_labels
from autofusion.data.manifest import MODALITY_ROLES, resolve_columns
from autofusion.data.reading import inner_name, read_manifest
from autofusion.data.rows import make_inputs
from autofusion.errors import ConfigError, DataError
from autofusion.home import autofusion_home, spaces_dir
from autofusion.modalities import MODALITIES
from autofusion.modalities.tabular import column_kind, is_code
from autofusion.models import FUSIONS
from autofusion.spaces.load import SPACES_DIR, Space, load_space, merge_space
from autofusion.spaces.pretrained import offer
from autofusion.spaces.schema import DataSection

AUTO_DIR = SPACES_DIR / "auto"
# The order modalities look at leftover columns: a list of readings must not pass for text.
RESOLVE_ORDER = ("image", "audio", "video", "sensor", "text", "tabular")
# Manifest names that say nothing about the data: the folder names it instead.
GENERIC_STEMS = frozenset({"manifest", "data", "dataset", "train", "metadata", "meta", "labels", "index", "all",
                           "samples", "annotations"})
KEY_ORDER = ("task", "description", "modalities", "data", "encoders", "fusion", "head", "loss", "optimizer",
             "lr_schedule", "train", "search")


@dataclass(frozen=True)
class Found:
    """What a manifest holds, as a search would read it.

    Attributes:
        manifest: the manifest, resolved.
        roles: role -> column(s) (modalities, label, split, group).
        modalities: the modalities found, in the usual order.
        inputs: the model's inputs (one per column of a modality; one for all tabular columns).
        target: classification, multilabel or regression.
        target_std: the targets' standard deviation (regression; of their log when they are learned
            on the log scale), for huber's delta.
        kinds: each tabular column's kind (numeric or categorical), judged on all rows.
    """

    manifest: Path
    roles: dict[str, list[str]]
    modalities: list[str]
    inputs: int
    target: str
    target_std: float = 1.0
    kinds: dict[str, str] = field(default_factory=dict)
    asked: bool = False  # the target kind was asked for (--target), not decided from the labels

    @property
    def joinable(self) -> list[str]:
        """The modalities with several columns that a trial may read joined (text fields)."""
        return [m for m in self.modalities if len(self.roles.get(m, [])) > 1 and MODALITIES.get(m).joinable]

    @property
    def fewest_inputs(self) -> int:
        """The model's inputs when every joinable modality is read joined (one input each)."""
        return self.inputs - sum(len(self.roles[m]) - 1 for m in self.joinable)


def find_modalities(manifest: str | Path, columns: dict[str, list[str]] | None = None,
                    target: str | None = None) -> Found:
    """The manifest's column roles, modalities and target kind (``target``: what ``--target``
    asked for; None decides from the labels).

    Raises:
        DataError: no label column, no column of any modality, or labels that cannot be
            ``target``.
    """
    path = Path(manifest).resolve()
    df = read_manifest(path)
    order = [m for m in RESOLVE_ORDER if m in MODALITIES] + [m for m in MODALITIES.names() if m not in RESOLVE_ORDER]
    roles = resolve_columns(df, path, order, flag=columns, optional=(*order, "split", "group"))
    modalities = [m for m in MODALITY_ROLES if m in roles]
    if not modalities:
        raise DataError(
            f"{path}: no column of any modality ({', '.join(order)}) besides the label; columns: "
            f"{', '.join(map(str, df.columns))}; name them with --columns, e.g. --columns image=photo,tabular=price"
        )
    label = roles["label"][0]
    asked = target is not None
    target, _, targets, bad = parse_labels(df[label], DataSection(target=target or "auto"), path, label)
    std = 1.0
    if target == "regression":
        ok = np.setdiff1d(np.arange(len(df)), np.fromiter(bad, dtype=int, count=len(bad)))
        y = targets[ok]
        y = np.log(y) if log_target(y) else y  # learned on the log scale then (data.labels.target_scale)
        std = float(np.std(y)) if len(ok) > 1 else 1.0
    kinds = {c: str(column_kind(df[c], strict=False)) for c in roles.get("tabular", [])}
    kinds.update({c: "categorical" for c, k in kinds.items() if k == "numeric" and is_code(df[c])})  # as a trial reads it
    return Found(path, roles, modalities, len(make_inputs(roles, modalities)), target,
                 float(f"{std:.2g}") if std > 0 else 1.0, kinds, asked)


def data_name(manifest: str | Path) -> str:
    """A name for the data's experiment and registered model: the manifest's file name, or its
    folder's when the file name is generic (``houses/manifest.csv`` -> ``houses``)."""
    path = Path(manifest).resolve()
    stem = inner_name(path).stem  # m.csv.gz -> m
    stem = path.parent.name if stem.lower() in GENERIC_STEMS else stem
    return re.sub(r"[^a-z0-9_.-]+", "_", stem.lower()).strip("_.-") or "data"


def fragment(name: str) -> dict[str, Any]:
    """One part of an assembled space (``search_spaces/auto/<name>.yaml``)."""
    path = AUTO_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: missing; every modality and target kind needs its part of an assembled space")
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def assemble(found: Found, name: str) -> dict[str, Any]:
    """The space for ``found``: the shared part, the target kind's and each modality's, merged;
    fusion operators that cannot work on this many inputs left out."""
    space: dict[str, Any] = fragment("common")
    for part in (found.target, *found.modalities):
        space = merge_space(space, fragment(part))
    fusion = space["fusion"]["choices"]
    for op in list(fusion):  # each operator declares the inputs it works on (models/base.py Fusion)
        cls = FUSIONS.get(op)
        if not (cls.fits(found.inputs) and cls.fits(found.fewest_inputs)):  # text read joined: fewest
            fusion.pop(op)
    for m in found.joinable:  # several text fields: one input each (shared or own encoder), or joined
        space["encoders"][m] = {"layout": {"type": "categorical", "choices": ["joined", "columns"]},
                                "share_weights": {"type": "categorical", "choices": [True, False]},
                                **space["encoders"][m]}
    space = offer(space)  # + the recommended pretrained encoders found here (spaces/pretrained.py)
    huber = space.get("loss", {}).get("choices", {}).get("huber")
    if isinstance(huber, dict) and found.target == "regression":
        huber["delta"] = found.target_std
    cols = {r: (c[0] if len(c) == 1 else c) for r, c in found.roles.items()}
    data = {"columns": cols, **space.get("data", {}), **({"target": found.target} if found.asked else {})}
    space.update(task=name, description=f"assembled from {found.manifest.name}: {', '.join(found.modalities)} "
                                        f"-> {found.target}", data=data)
    return {k: space[k] for k in KEY_ORDER if k in space}


class _Flow(dict):
    """A mapping written on one line (a distribution, an encoder's parameters)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Flow, lambda d, data: d.represent_mapping("tag:yaml.org,2002:map", data, flow_style=True))
_Dumper.add_representer(list, lambda d, data: d.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True))


def to_yaml(space: dict[str, Any]) -> str:
    """A space as YAML: sections and choices in block style, short mappings below them on one line."""

    def shape(obj: Any, depth: int) -> Any:
        if not isinstance(obj, dict):
            return obj
        inner = {k: shape(v, depth + 1) for k, v in obj.items()}
        short = len(yaml.safe_dump(obj, default_flow_style=True, width=10_000)) <= 72
        return _Flow(inner) if depth >= 2 and short else inner

    return yaml.dump(shape(space, 0), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=110)


def header(found: Found) -> str:
    """Comment lines that say where the space came from and what was found."""
    roles = "; ".join(f"{r}: {', '.join(c)}" for r, c in found.roles.items())
    lines = [
        "# A search space assembled from the data (autofusion spaces show --data MANIFEST).",
        f"# Manifest: {found.manifest}",
        f"# Found: {roles}; {found.inputs} model inputs; target: {found.target}"
        f"{' (--target)' if found.asked else ''}.",
    ]
    for m in found.joinable:
        lines.append(f"#   {len(found.roles[m])} {m} columns: a trial reads them one input each "
                     f"(encoders.{m}.layout: columns) or as one text, each field after its name (joined)")
    if found.kinds:
        for kind in ("numeric", "categorical"):
            cols = [c for c, k in found.kinds.items() if k == kind]
            lines.append(f"#   tabular {kind} (inferred): {', '.join(cols) or '-'}")
        lines.append("#   to change a column's kind, declare it: modalities: {tabular: {categorical: [zipcode]}}")
    parts = ", ".join(["common", found.target, *found.modalities])
    lines += [f"# Parts: search_spaces/auto/{{{parts}}}.yaml. Edit it, then:",
              f"#   autofusion search --space THIS.yaml --data {found.manifest}"]
    return "\n".join(lines) + "\n"


def auto_space_text(manifest: str | Path, columns: dict[str, list[str]] | None = None,
                    name: str | None = None, target: str | None = None) -> tuple[str, Found]:
    """The assembled space as commented YAML, validated by the loader, and what was found
    (``target``: ``--target``, else decided from the labels)."""
    found = find_modalities(manifest, columns, target)
    name = name or data_name(found.manifest)
    text = header(found) + to_yaml(assemble(found, name))
    with tempfile.TemporaryDirectory() as tmp:
        check = Path(tmp) / f"{name}.yaml"
        check.write_text(text, encoding="utf-8")
        load_space(space=check)
    return text, found


def write_auto_space(manifest: str | Path, columns: dict[str, list[str]] | None = None, name: str | None = None,
                     home: Path | None = None, target: str | None = None) -> Space:
    """The assembled space, written under ``<home>/spaces/`` (the search logs and resumes it
    like any space file) and loaded."""
    text, found = auto_space_text(manifest, columns, name, target)
    name = name or data_name(found.manifest)
    folder = spaces_dir(home or autofusion_home())
    folder.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    path = folder / f"{stem}-{hashlib.sha256(text.encode()).hexdigest()[:8]}.yaml"
    if not path.is_file():
        path.write_text(text, encoding="utf-8")
    return load_space(space=path)
