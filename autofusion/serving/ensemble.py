"""The logged ensemble: one MLflow pyfunc model over several trials' models, on raw inputs.

Each member is saved the way a single model is (:func:`autofusion.serving.pyfunc.save_model_files`:
its whole model's weights, trial config and fitted feature extractors) in a folder of its own
under ``members/``, except that the pretrained backbones are written once per distinct one in
``members/backbone_weights/`` (a frozen MiniLM held by five members, or by a bagged model's
folds, is one file); the data's meta (preprocessing, labels) is shared, and ``ensemble.json``
holds each member's kind, trial, run and weight. Loading rebuilds every member with its kind's
loader (:data:`MEMBER_KINDS`); predicting averages their probabilities (or regression
outputs) with the weights greedy selection gave them (``autofusion.search.ensemble``), so the
output has the columns a single model's has.

A member is any object with ``meta`` and ``outputs(df, cache, perturb) -> [rows, outputs]``
(:class:`ServedMember`): a request's ``cache`` is shared by all members, so each file is
decoded, each text tokenised and each pretrained backbone the members hold in common run once
(``serving.shared_backbones``: loading keeps one copy of each), and an importance pass perturbs every
member alike (``serving.perturb``). A member of another kind (a tree model over tabular
fields) joins with its loader and reads what it needs from the same cache.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import pandas as pd

from autofusion.data.prepare import DataMeta
from autofusion.models.trees import ROW_MODELS, TreeModel
from autofusion.serving.perturb import Perturbation
from autofusion.serving.pyfunc import (
    BACKBONE_WEIGHTS,
    ArtifactContext,
    FusionPyfunc,
    log_pyfunc,
    output_frame,
    save_model_files,
)
from autofusion.serving.shared_backbones import SHARED_WEIGHTS, BackboneFiles, share_backbones
from autofusion.serving.trees import BACKBONES, load_tree_member, save_tree_files

try:
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover - mlflow is a dependency
    PythonModel = object  # type: ignore[misc,assignment]


@dataclass(frozen=True)
class Member:
    """One trial's model in an ensemble, with its weight (what is logged)."""

    model: Any
    trial_config: Any
    weight: float
    trial: int
    run_id: str | None


class ServedMember(Protocol):
    """What the ensemble asks of a loaded member."""

    meta: DataMeta

    def outputs(self, df: pd.DataFrame, cache: dict[Any, Any] | None = None,
                perturb: Perturbation | None = None) -> np.ndarray: ...


def load_fusion_member(folder: Path, meta_path: str) -> FusionPyfunc:
    """A neural member: the folder :func:`save_model_files` wrote, loaded as a single model is
    (its backbones from the ensemble's ``backbone_weights`` beside it)."""
    artifacts = {"meta": meta_path, "weights": str(folder / "weights.pt"),
                 "trial_config": str(folder / "trial_config.json"), "extractors": str(folder / "extractors")}
    if (folder / SHARED_WEIGHTS).is_file():
        artifacts.update({SHARED_WEIGHTS: str(folder / SHARED_WEIGHTS), BACKBONE_WEIGHTS: str(folder.parent / BACKBONE_WEIGHTS)})
    py = FusionPyfunc()
    py.load_context(ArtifactContext(artifacts))
    return py


# Member kind (``ensemble.json``'s ``kind``; none before kinds existed: a neural member) -> loader.
MEMBER_KINDS: dict[str, Callable[[Path, str], ServedMember]] = {"fusion": load_fusion_member,
                                                                  **{k: load_tree_member for k in ROW_MODELS}}


class EnsemblePyfunc(PythonModel):
    """Loads every member with its kind's loader; predicts their weighted average."""

    def load_context(self, context: Any) -> None:
        meta_path = context.artifacts["meta"]
        self.meta = DataMeta.from_json(json.loads(Path(meta_path).read_text()))
        spec = json.loads(Path(context.artifacts["ensemble"]).read_text())
        root = Path(context.artifacts["members"])
        self.members: list[ServedMember] = []
        self.weights: list[float] = []
        self.trials: list[int] = []
        for m in spec["members"]:
            kind = m.get("kind", "fusion")
            if kind not in MEMBER_KINDS:
                raise ValueError(f"unknown ensemble member kind {kind!r}; known: {', '.join(sorted(MEMBER_KINDS))}")
            self.members.append(MEMBER_KINDS[kind](root / m["folder"], meta_path))
            self.weights.append(float(m["weight"]))
            self.trials.append(int(m["trial"]))
        # one copy of each backbone the members hold in common: run once per request
        self.shared_backbones = share_backbones(m.model for m in self.members if getattr(m, "model", None) is not None)

    def outputs(self, df: pd.DataFrame, cache: dict[Any, Any] | None = None,
                perturb: Perturbation | None = None) -> np.ndarray:
        """The members' weighted average, from one request cache (see the module doc)."""
        cache = {} if cache is None else cache
        return sum(w * m.outputs(df, cache, perturb) for m, w in zip(self.members, self.weights))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        df = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return output_frame(self.outputs(df.reset_index(drop=True)), self.meta)


def log_ensemble_model(uri: str, run_id: str, members: list[Member], data: Any, name: str = "ensemble") -> str:
    """Logs the ensemble as one MLflow pyfunc model (``ensemble``) in run ``run_id`` (the
    search's); returns its ``models:/`` URI."""
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "meta.json").write_text(json.dumps(data.meta.to_json()))
        entries = []
        files = BackboneFiles(t / "members" / BACKBONE_WEIGHTS)  # each distinct backbone once
        for i, m in enumerate(members):
            folder = t / "members" / f"member_{i}"
            folder.mkdir(parents=True)
            kind = m.model.kind if isinstance(m.model, TreeModel) else "fusion"
            if kind in ROW_MODELS:
                save_tree_files(folder, m.model, data, backbones=t / "members" / BACKBONES, files=files)  # one copy
            else:
                save_model_files(folder, m.model, m.trial_config, data, files)
            entries.append({"kind": kind, "folder": folder.name, "trial": m.trial, "run_id": m.run_id,
                            "weight": m.weight})
        (t / "ensemble.json").write_text(json.dumps({"members": entries}, indent=1))
        artifacts = {"meta": str(t / "meta.json"), "ensemble": str(t / "ensemble.json"), "members": str(t / "members")}
        return log_pyfunc(uri, run_id, name, EnsemblePyfunc, artifacts, data)
