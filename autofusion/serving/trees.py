"""The trees member served on raw rows: the same request columns a neural model takes, read
through the same modality code and fitted extractors (``serving.inputs``), then the trees'
feature row (``models.trees``) and the booster. Logged alone when it is the search's best
trial, or as a member of the ensemble pyfunc (kind ``lightgbm``). The linear member
(``models.linear``) is served by the same code: its model is a ``TreeModel`` too.

A block that reads a frozen pretrained encoder's embedding needs that encoder's backbone: it
is saved with the member (``backbones/<key>/``: the encoder's name and parameters, its
weights), once per ensemble however many members read it, and loaded as a light module
(:class:`Backbones`) that ``serving.shared_backbones`` treats like a neural member's, so an
ensemble holds one copy and runs it once per request for all its members."""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from autofusion.data.prepare import DataMeta
from autofusion.models import ENCODERS
from autofusion.models.extractors import input_key, load_extractor
from autofusion.models.trees import TreeModel
from autofusion.serving.inputs import model_inputs
from autofusion.serving.perturb import pass_cache
from autofusion.serving.pyfunc import BACKBONE_WEIGHTS, PythonModel, log_pyfunc, output_frame
from autofusion.serving.shared_backbones import BackboneFiles, joined_backbones, with_backbone_outputs

BACKBONES = "backbones"  # the folder of the encoders the embedding blocks read
SVD = "svd"  # an ensemble's folder of its row members' SVD components, each distinct one once


class Backbones(nn.Module):
    """The pretrained encoders a row member's embedding blocks read, with their backbones:
    shaped like a neural model for ``serving.shared_backbones`` (``encoders``, ``encoder_of``
    and ``feature_keys`` by input: the model-input key each encoder reads)."""

    def __init__(self, encoders: dict[str, nn.Module], encoder_of: dict[str, str], keys: dict[str, str]) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.encoder_of = dict(encoder_of)
        self.feature_keys = dict(keys)


class TreePyfunc(PythonModel):
    """Rebuilds the trees member from its files; predicts from raw inputs."""

    def load_context(self, context: Any) -> None:
        self.meta = DataMeta.from_json(json.loads(Path(context.artifacts["meta"]).read_text()))
        self.trees = TreeModel.load(Path(context.artifacts["trees"]))
        folder = Path(context.artifacts["extractors"])
        self.extractors = {k: load_extractor(folder / k) for k in extractor_keys(self.trees)}
        self.model = load_backbones(Path(context.artifacts[BACKBONES]), self.trees, self.meta) \
            if self.trees.embeddings else None

    def outputs(self, df: pd.DataFrame, cache: dict[Any, Any] | None = None, perturb: Any = None) -> np.ndarray:
        """Class probabilities, or regression outputs, ``[rows, outputs]``. An importance pass
        (``perturb``) changes the request's cells (a removed input is blank: missing fields,
        an empty text): the inputs it changes are read anew, empty cells allowed; the others
        come from the request's ``cache``, shared with the other members."""
        fresh = frozenset() if perturb is None else perturb.changed(self.meta, self.trees.inputs)
        arrays = {b.id: inputs for b, inputs in zip(self.trees.features.blocks, self._block_inputs(df, cache, perturb,
                                                                                                  fresh))}
        features, parts = self.trees.features, []
        for b in features.blocks:
            key = ("trees block", id(self), b.id)  # a block the pass leaves alone: made once per request
            shared = cache is not None and b.input not in fresh
            if shared and key in cache:
                parts.append(cache[key])
                continue
            part = features.block(b, b.columns(_array(arrays[b.id])))
            if shared:
                cache[key] = part
            parts.append(part)
        out = self.trees.predict(features.join(parts))
        if self.meta.target == "regression":
            return out
        from scipy.special import softmax

        return softmax(out, axis=1)

    def _block_inputs(self, df: pd.DataFrame, cache: dict[Any, Any] | None, perturb: Any,
                      fresh: frozenset[str]) -> list[Any]:
        """Each block's input arrays, in the blocks' order: the classical ones from the
        fitted extractors, the embeddings from the backbones (from ``cache`` when another
        member or an earlier pass ran them)."""
        classical = self._read(df, self.trees.keys, cache, perturb, fresh)
        embedded = {} if self.model is None else with_backbone_outputs(
            self.model, self._read(df, self.model.feature_keys, cache, perturb, fresh), cache, fresh,
            pass_cache(cache, perturb))
        return [embedded[b.input][b.output] if b.embedding else classical[b.input] for b in self.trees.features.blocks]

    def _read(self, df: pd.DataFrame, keys: dict[str, str | None], cache: dict[Any, Any] | None, perturb: Any,
              fresh: frozenset[str]) -> dict[str, Any]:
        """The model inputs of ``keys`` (input -> extractor key): the inputs a pass changes
        read from its changed cells into the pass's own cache, the others from ``cache``."""
        inputs, _ = model_inputs(df, self.meta, {k: v for k, v in keys.items() if k not in fresh}, self.extractors,
                                 cache)
        changed = {k: v for k, v in keys.items() if k in fresh}
        if changed:
            inputs.update(model_inputs(perturb.frame(df), self.meta, changed, self.extractors,
                                       pass_cache(cache, perturb), fresh)[0])
        return inputs

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        df = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return output_frame(self.outputs(df.reset_index(drop=True)), self.meta)


def extractor_keys(model: TreeModel) -> set[str]:
    """The fitted extractors a member reads raw cells with: its classical blocks', and the
    model-input extractors (tokenizer, pixels at the model's size) of its embeddings' encoders."""
    return ({k for k in model.keys.values() if k is not None}
            | {input_key(k) for k in model.embeddings.values()})


def save_backbones(folder: Path, model: TreeModel, data: Any, files: BackboneFiles | None = None) -> None:
    """Writes the encoder of each embedding the member reads into ``folder/<key>/`` (its
    registry name, parameters and weights), unless an earlier member of the same ensemble
    wrote it already; in an ensemble, its backbone's weights go to the ensemble's ``files``
    (one copy with its neural members' equal ones; ``encoder.json`` names the file)."""
    import torch

    for key in set(model.embeddings.values()):
        target = folder / key
        if (target / "weights.pt").exists():
            continue
        frozen = data.extractors[key]  # the FrozenOutputs the search embedded the inputs with
        info = frozen.base_info
        encoder = frozen.encoder_cls(replace(info, extra={**info.extra, "backbone": True, "load_weights": True}),
                                     **frozen.params)
        name = next(n for n, cls in ENCODERS[frozen.modality].items() if cls is frozen.encoder_cls)
        spec = {"modality": frozen.modality, "encoder": name, "params": frozen.params}
        state = encoder.state_dict()
        if files is not None and getattr(encoder, "backbone", None) is not None:
            spec["backbone_file"] = files.put({k.removeprefix("backbone."): v for k, v in state.items()
                                               if k.startswith("backbone.")})
            state = {k: v for k, v in state.items() if not k.startswith("backbone.")}
        target.mkdir(parents=True, exist_ok=True)
        torch.save(state, target / "weights.pt")
        (target / "encoder.json").write_text(json.dumps(spec, default=str))


def load_backbones(folder: Path, model: TreeModel, meta: DataMeta) -> Backbones:
    """The encoders :func:`save_backbones` wrote for ``model``'s embeddings, built from their
    saved configuration without any hub, with their weights."""
    import torch

    from autofusion.models.build import encoder_info

    encoders: dict[str, nn.Module] = {}
    names: dict[str, str] = {}
    for i, key in enumerate(sorted(set(model.embeddings.values()))):
        spec = json.loads((folder / key / "encoder.json").read_text())
        cls = ENCODERS[spec["modality"]].get(spec["encoder"])
        info = encoder_info(meta, spec["modality"], input_key(key))
        enc = cls(replace(info, extra={**info.extra, "backbone": True, "load_weights": False}), **spec["params"])
        state = torch.load(folder / key / "weights.pt", map_location="cpu", weights_only=True)
        if "backbone_file" in spec:  # in the ensemble's backbone files, beside its folder
            state = joined_backbones(state, {"backbone": spec["backbone_file"]}, folder.parent / BACKBONE_WEIGHTS)
        enc.load_state_dict(state)
        encoders[f"e{i}"] = enc.eval()
        names[key] = f"e{i}"
    return Backbones(encoders, {n: names[k] for n, k in model.embeddings.items()},
                     {n: input_key(k) for n, k in model.embeddings.items()})


def _array(x: Any) -> np.ndarray:
    """An input's batch as a numpy array (``model_inputs`` gives tensors)."""
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def save_tree_files(folder: Path, model: TreeModel, data: Any, backbones: Path | None = None,
                    files: BackboneFiles | None = None) -> dict[str, str]:
    """Writes what :class:`TreePyfunc` loads besides the data's meta: the booster and feature
    layout (``trees``), the fitted extractors its blocks read (``extractors``) and the
    encoders of its embeddings (``backbones``: in ``backbones`` when given, a folder the
    members of an ensemble share)."""
    model.save(folder / "trees", None if backbones is None else backbones.parent / SVD)  # an ensemble's: shared
    (folder / "extractors").mkdir(parents=True, exist_ok=True)
    for key in extractor_keys(model):
        data.extractors[key].save(folder / "extractors" / key)
    out = {"trees": str(folder / "trees"), "extractors": str(folder / "extractors")}
    if model.embeddings:
        save_backbones(backbones or folder / BACKBONES, model, data, files)
        out[BACKBONES] = str(backbones or folder / BACKBONES)
    return out


def load_tree_member(folder: Path, meta_path: str) -> TreePyfunc:
    """A trees member of an ensemble: the folder :func:`save_tree_files` wrote (its encoders
    in its own ``backbones`` folder, or in the one its ensemble's members share beside it)."""
    from autofusion.serving.pyfunc import ArtifactContext

    py = TreePyfunc()
    own = folder / BACKBONES
    py.load_context(ArtifactContext({"meta": meta_path, "trees": str(folder / "trees"),
                                     "extractors": str(folder / "extractors"),
                                     BACKBONES: str(own if own.exists() else folder.parent / BACKBONES)}))
    return py


def log_tree_model(uri: str, run_id: str, model: TreeModel, data: Any) -> str:
    """Logs the trees member as an MLflow pyfunc in its run; returns its ``models:/`` URI."""
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "meta.json").write_text(json.dumps(data.meta.to_json()))
        artifacts = {"meta": str(t / "meta.json"), **save_tree_files(t, model, data)}
        return log_pyfunc(uri, run_id, "model", TreePyfunc, artifacts, data)
