"""The logged ensemble: one MLflow pyfunc model over several trials' models, on raw inputs.

Each member is saved the way a single model is (:func:`autofusion.serving.pyfunc.save_model_files`:
its whole model's weights, trial config and fitted feature extractors) in a folder of its own
under ``members/``; the data's meta (preprocessing, labels) is shared, and ``ensemble.json``
holds each member's trial, run and weight. Loading rebuilds every member as a
:class:`FusionPyfunc`; predicting averages their probabilities (or regression outputs) with
the weights greedy selection gave them (``autofusion.search.ensemble``), so the output has
the columns a single model's has.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from autofusion.data.prepare import DataMeta
from autofusion.serving.pyfunc import (
    ArtifactContext,
    FusionPyfunc,
    log_pyfunc,
    output_frame,
    save_model_files,
)

try:
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover - mlflow is a dependency
    PythonModel = object  # type: ignore[misc,assignment]


@dataclass(frozen=True)
class Member:
    """One trial's model in an ensemble, with its weight."""

    model: Any
    trial_config: Any
    weight: float
    trial: int
    run_id: str | None


class EnsemblePyfunc(PythonModel):
    """Loads every member as a :class:`FusionPyfunc`; predicts their weighted average."""

    def load_context(self, context: Any) -> None:
        meta_path = context.artifacts["meta"]
        self.meta = DataMeta.from_json(json.loads(Path(meta_path).read_text()))
        spec = json.loads(Path(context.artifacts["ensemble"]).read_text())
        root = Path(context.artifacts["members"])
        self.members: list[FusionPyfunc] = []
        self.weights: list[float] = []
        self.trials: list[int] = []
        for m in spec["members"]:
            folder = root / m["folder"]
            py = FusionPyfunc()
            py.load_context(ArtifactContext({"meta": meta_path, "weights": str(folder / "weights.pt"),
                                      "trial_config": str(folder / "trial_config.json"),
                                      "extractors": str(folder / "extractors")}))
            self.members.append(py)
            self.weights.append(float(m["weight"]))
            self.trials.append(int(m["trial"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        df = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        df = df.reset_index(drop=True)
        cache: dict[str, Any] = {}  # each file decoded once for all members
        avg = sum(w * py.outputs(df, cache) for py, w in zip(self.members, self.weights))
        return output_frame(avg, self.meta)


def log_ensemble_model(uri: str, run_id: str, members: list[Member], data: Any) -> str:
    """Logs the ensemble as one MLflow pyfunc model (``ensemble``) in run ``run_id`` (the
    search's); returns its ``models:/`` URI."""
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "meta.json").write_text(json.dumps(data.meta.to_json()))
        entries = []
        for i, m in enumerate(members):
            folder = t / "members" / f"member_{i}"
            folder.mkdir(parents=True)
            save_model_files(folder, m.model, m.trial_config, data)
            entries.append({"folder": folder.name, "trial": m.trial, "run_id": m.run_id, "weight": m.weight})
        (t / "ensemble.json").write_text(json.dumps({"members": entries}, indent=1))
        artifacts = {"meta": str(t / "meta.json"), "ensemble": str(t / "ensemble.json"), "members": str(t / "members")}
        return log_pyfunc(uri, run_id, "ensemble", EnsemblePyfunc, artifacts, data)
