"""The trees member served on raw rows: the same request columns a neural model takes, read
through the same modality code and fitted extractors (``serving.inputs``), then the trees'
feature row (``models.trees``) and the booster. Logged alone when it is the search's best
trial, or as a member of the ensemble pyfunc (kind ``lightgbm``). The linear member
(``models.linear``) is served by the same code: its model is a ``TreeModel`` too."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autofusion.data.prepare import DataMeta
from autofusion.models.extractors import load_extractor
from autofusion.models.trees import TreeModel
from autofusion.serving.inputs import model_inputs
from autofusion.serving.perturb import pass_cache
from autofusion.serving.pyfunc import PythonModel, log_pyfunc, output_frame


class TreePyfunc(PythonModel):
    """Rebuilds the trees member from its files; predicts from raw inputs."""

    def load_context(self, context: Any) -> None:
        self.meta = DataMeta.from_json(json.loads(Path(context.artifacts["meta"]).read_text()))
        self.trees = TreeModel.load(Path(context.artifacts["trees"]))
        folder = Path(context.artifacts["extractors"])
        self.extractors = {k: load_extractor(folder / k) for k in set(self.trees.keys.values()) if k is not None}

    def outputs(self, df: pd.DataFrame, cache: dict[Any, Any] | None = None, perturb: Any = None) -> np.ndarray:
        """Class probabilities, or regression outputs, ``[rows, outputs]``. An importance pass
        (``perturb``) changes the request's cells (a removed input is blank: missing fields,
        an empty text): the inputs it changes are read anew, empty cells allowed; the others
        come from the request's ``cache``, shared with the other members."""
        keys = self.trees.keys
        fresh = frozenset() if perturb is None else perturb.changed(self.meta, keys)
        inputs, _ = model_inputs(df, self.meta, {k: v for k, v in keys.items() if k not in fresh}, self.extractors,
                                 cache)
        if fresh:  # read from the changed cells, into the pass's own cache
            inputs.update(model_inputs(perturb.frame(df), self.meta, {k: keys[k] for k in fresh}, self.extractors,
                                       pass_cache(cache, perturb), fresh)[0])
        features, parts = self.trees.features, []
        for b in features.blocks:
            key = ("trees block", id(self), b.input)  # a block the pass leaves alone: made once per request
            shared = cache is not None and b.input not in fresh
            if shared and key in cache:
                parts.append(cache[key])
                continue
            part = features.block(b, b.columns(_array(inputs[b.input])))
            if shared:
                cache[key] = part
            parts.append(part)
        out = self.trees.predict(features.join(parts))
        if self.meta.target == "regression":
            return out
        from scipy.special import softmax

        return softmax(out, axis=1)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        df = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return output_frame(self.outputs(df.reset_index(drop=True)), self.meta)


def _array(x: Any) -> np.ndarray:
    """An input's batch as a numpy array (``model_inputs`` gives tensors)."""
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def save_tree_files(folder: Path, model: TreeModel, data: Any) -> dict[str, str]:
    """Writes what :class:`TreePyfunc` loads besides the data's meta: the booster and feature
    layout (``trees``) and the fitted extractors its blocks read (``extractors``)."""
    model.save(folder / "trees")
    (folder / "extractors").mkdir(parents=True, exist_ok=True)
    for key in {k for k in model.keys.values() if k is not None}:
        data.extractors[key].save(folder / "extractors" / key)
    return {"trees": str(folder / "trees"), "extractors": str(folder / "extractors")}


def load_tree_member(folder: Path, meta_path: str) -> TreePyfunc:
    """A trees member of an ensemble: the folder :func:`save_tree_files` wrote."""
    from autofusion.serving.pyfunc import ArtifactContext

    py = TreePyfunc()
    py.load_context(ArtifactContext({"meta": meta_path, "trees": str(folder / "trees"),
                                     "extractors": str(folder / "extractors")}))
    return py


def log_tree_model(uri: str, run_id: str, model: TreeModel, data: Any) -> str:
    """Logs the trees member as an MLflow pyfunc in its run; returns its ``models:/`` URI."""
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "meta.json").write_text(json.dumps(data.meta.to_json()))
        artifacts = {"meta": str(t / "meta.json"), **save_tree_files(t, model, data)}
        return log_pyfunc(uri, run_id, "model", TreePyfunc, artifacts, data)
