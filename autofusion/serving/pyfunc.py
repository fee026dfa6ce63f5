"""The logged model: an MLflow pyfunc that takes raw inputs and preprocesses them itself.

Input: a DataFrame with one column per input of the model (see ``serving.inputs``). Image,
audio and video cells are file paths, or the file's bytes base64-encoded (optionally as a
``data:...;base64,`` URI), so a REST client can send them; text cells are text. Output: the
predicted label and one probability column per class (``prob_<class>``), or ``prediction``
for numeric targets. The preprocessing settings, what each modality fitted on the training
split (the vocabulary), the fitted feature extractors (TF-IDF; a pretrained encoder's
tokenizer, image size and normalisation, sample rate) and the label names travel in the
model's artifacts, and the same modality code runs, so serving preprocesses exactly like
training. A pretrained backbone is rebuilt from its config saved in the metadata and gets its
weights from the logged state dict: loading the model needs no hub and no network.
"""

from __future__ import annotations

import base64
import contextlib
import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from autofusion.data.prepare import DataMeta
from autofusion.data.splits import TEST
from autofusion.modalities import MODALITIES
from autofusion.models.build import build_model, whole_model
from autofusion.models.extractors import load_extractor
from autofusion.serving.encoded import encoded, reading_features
from autofusion.serving.inputs import missing, model_inputs
from autofusion.serving.perturb import Perturbation, pass_cache, take
from autofusion.serving.shared_backbones import (
    SHARED_WEIGHTS,
    BackboneFiles,
    joined_backbones,
    split_backbones,
    with_backbone_outputs,
)
from autofusion.trial import TrialConfig

FORWARD_BATCH = 256  # rows per forward pass of the model (its backbones run in smaller batches)
BACKBONE_WEIGHTS = "backbone_weights"  # an ensemble's folder of its neural members' backbones

try:
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover - mlflow is a dependency
    PythonModel = object  # type: ignore[misc,assignment]


class FusionPyfunc(PythonModel):
    """Rebuilds the trained FusionModel from its config and weights; predicts from raw inputs."""

    def load_context(self, context: Any) -> None:
        import torch

        self.meta = DataMeta.from_json(json.loads(Path(context.artifacts["meta"]).read_text()))
        self.tc = TrialConfig.from_json(json.loads(Path(context.artifacts["trial_config"]).read_text()))
        # Whole (every pretrained backbone in it), built from the saved configs: the weights,
        # pretrained ones included, are all in the state dict; nothing is read from a hub.
        self.model = build_model(self.tc, self.meta, layout="whole", pretrained=False)
        state = torch.load(context.artifacts["weights"], map_location="cpu", weights_only=True)
        if SHARED_WEIGHTS in context.artifacts:  # an ensemble's member: its backbones in the ensemble's files
            where = json.loads(Path(context.artifacts[SHARED_WEIGHTS]).read_text())
            state = joined_backbones(state, where, Path(context.artifacts[BACKBONE_WEIGHTS]))
        self.model.load_state_dict(state)
        self.model.eval()
        folder = Path(context.artifacts["extractors"]) if "extractors" in context.artifacts else None
        keys = {k for k in self.model.feature_keys.values() if k is not None}
        self.extractors = {k: load_extractor(folder / k) for k in keys} if folder else {}

    def outputs(self, df: pd.DataFrame, cache: dict[Any, Any] | None = None,
                perturb: Perturbation | None = None) -> np.ndarray:
        """Class (or label) probabilities, or regression outputs, ``[rows, outputs]``.

        Args:
            df: request rows (see ``serving.inputs``).
            cache: one per request: decoded inputs and backbone outputs, shared by the members
                of an ensemble and by importance passes over the same rows.
            perturb: one input taken away (``serving.perturb``; importance), else None: the
                pass runs over each input's encoder features, kept in ``cache`` after the
                first pass (``serving.encoded``).
        """
        import torch

        cache = {} if cache is None else cache
        keys = self.model.feature_keys
        touched = frozenset() if perturb is None else perturb.read_again(self.meta, keys)
        inputs, present = model_inputs(df, self.meta, {k: v for k, v in keys.items() if k not in touched},
                                       self.extractors, cache)
        this_pass = pass_cache(cache, perturb)  # what this pass reads anew, shared by an ensemble's members
        if touched:  # read again from the blanked or shuffled cells
            more = model_inputs(perturb.frame(df), self.meta, {k: keys[k] for k in touched}, self.extractors,
                                this_pass, touched)
            inputs, present = {**inputs, **more[0]}, {**present, **more[1]}
        inputs = with_backbone_outputs(self.model, inputs, cache, touched, this_pass)
        if perturb is not None:  # an importance pass: each input encoded once per request, fusion and head here
            kept = cache.setdefault(("encoded", id(self.model)), {})
            kept.update(encoded(self.model, inputs, [n for n in inputs if n not in kept and n not in touched],
                                FORWARD_BATCH))
            inputs = {**{n: kept[n] for n in inputs if n not in touched},
                      **encoded(self.model, inputs, touched, FORWARD_BATCH)}
            if not perturb.field and perturb.input in inputs:
                name = perturb.input
                inputs[name], present[name] = perturb.tensors(inputs[name], present[name])
        with torch.no_grad(), reading_features(self.model) if perturb is not None else contextlib.nullcontext():
            out = torch.cat([self.model(take(inputs, sl), take(present, sl)).float()
                             for sl in (slice(i, i + FORWARD_BATCH) for i in range(0, max(len(df), 1), FORWARD_BATCH))])
        if self.meta.target == "regression":
            return out.numpy().astype(np.float64)
        probs = torch.sigmoid(out) if self.meta.target == "multilabel" else torch.softmax(out, dim=-1)
        return probs.numpy().astype(np.float64)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        df = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return output_frame(self.outputs(df.reset_index(drop=True)), self.meta)


def output_frame(outputs: np.ndarray, meta: DataMeta) -> pd.DataFrame:
    """The prediction frame: ``label`` and ``prob_<class>`` columns, or ``prediction``."""
    if meta.target == "regression":  # learned on the log scale: back to the targets' own (data.labels.target_scale)
        pred = np.exp(outputs[:, 0]) if (meta.target_scale or {}).get("log") else outputs[:, 0]
        return pd.DataFrame({"prediction": pred})
    if meta.target == "multilabel":
        labels = [",".join(c for c, p in zip(meta.classes, row) if p >= 0.5) for row in outputs]
    else:
        labels = [meta.classes[i] for i in outputs.argmax(axis=1)]
    res = pd.DataFrame({"label": labels})
    for j, c in enumerate(meta.classes):
        res[f"prob_{c}"] = outputs[:, j]
    return res


def input_example(data: Any, rows: int = 2) -> pd.DataFrame:
    """A few test rows as raw inputs, one column per input (every column of a multi-column
    input): file cells base64-encoded so the example is self-contained."""
    meta = data.meta
    idx = data.indices(TEST)[:rows] if len(data.indices(TEST)) else np.arange(min(rows, len(data.split)))
    ex: dict[str, list[Any]] = {}
    for spec in (s for s in meta.input_specs if not s.joined):  # a joined input reads these columns
        cells = data.raw[spec.name]
        if isinstance(cells, pd.DataFrame):  # a multi-column input: its columns as they are
            for c in cells.columns:  # numbers as floats: the signature must accept a missing one later
                ex[c] = [None if missing(v) else (float(v) if _is_number(v) else v) for v in cells[c].iloc[idx]]
        elif MODALITIES.get(spec.modality).file_based:
            ex[spec.name] = ["" if v is None else base64.b64encode(Path(v).read_bytes()).decode("ascii")
                             for v in cells.iloc[idx]]
        else:
            ex[spec.name] = ["" if missing(v) else str(v) for v in cells.iloc[idx]]
    return pd.DataFrame(ex)


def signature(data: Any, example: pd.DataFrame, predicted: pd.DataFrame) -> Any:
    """The model's signature from its example; the columns of a multi-column (tabular) input
    accept any type and may be left out: a request's integers, floats, strings and missing
    cells all mean what they meant in the manifest (MLflow would refuse int64 for a column
    it saw as float64)."""
    from mlflow.models import infer_signature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    loose = {c for spec in data.meta.input_specs if isinstance(data.raw.get(spec.name), pd.DataFrame)
             for c in data.raw[spec.name].columns}
    sig = infer_signature(example, predicted)
    sig.inputs = Schema([ColSpec(AnyType(), c.name, required=False) if c.name in loose else c
                         for c in sig.inputs.inputs])
    return sig


def save_model_files(folder: Path, model: Any, tc: Any, data: Any, files: BackboneFiles | None = None) -> dict[str, str]:
    """Writes what :class:`FusionPyfunc` loads besides the data's meta into ``folder``: the
    whole model's weights, its trial config and its fitted feature extractors; returns them
    as MLflow artifacts (``weights``, ``trial_config``, ``extractors``). An ensemble's members
    are saved this way too, one folder each, their pretrained backbones in the ensemble's
    ``files`` (one file per distinct backbone, ``shared_weights.json`` says which)."""
    import torch

    model = whole_model(model, tc, data.meta)
    state = model.state_dict()
    if files is not None:
        state, where = split_backbones(model, state, files)
        (folder / SHARED_WEIGHTS).write_text(json.dumps(where))
    torch.save(state, folder / "weights.pt")
    (folder / "trial_config.json").write_text(json.dumps(asdict(tc), default=str))
    (folder / "extractors").mkdir()
    for key in {k for k in model.feature_keys.values() if k is not None}:  # fitted TF-IDF vocabularies, ...
        data.extractors[key].save(folder / "extractors" / key)
    return {k: str(folder / f) for k, f in (("weights", "weights.pt"), ("trial_config", "trial_config.json"),
                                            ("extractors", "extractors"))}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def log_fusion_model(uri: str, run_id: str, model: Any, tc: Any, data: Any) -> str:
    """Logs the model as an MLflow pyfunc in the trial's run; returns its ``models:/`` URI.

    The logged model is whole: a trial that trained on a frozen encoder's cached outputs is
    logged with that encoder's backbone and reads raw inputs like any other."""
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "meta.json").write_text(json.dumps(data.meta.to_json()))
        artifacts = {"meta": str(t / "meta.json"), **save_model_files(t, model, tc, data)}
        return log_pyfunc(uri, run_id, "model", FusionPyfunc, artifacts, data)


class ArtifactContext:
    """The part of MLflow's ``PythonModelContext`` a pyfunc's ``load_context`` reads."""

    def __init__(self, artifacts: dict[str, str]) -> None:
        self.artifacts = artifacts
        self.model_config: dict = {}


def log_pyfunc(uri: str, run_id: str, name: str, model_cls: type, artifacts: dict[str, str], data: Any) -> str:
    """Loads ``model_cls`` from ``artifacts`` here first (its predictions on the input example
    give the signature; a model that cannot predict fails before anything is logged), then
    logs it as model ``name`` in run ``run_id``; returns its ``models:/`` URI."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    example = input_example(data)
    py = model_cls()
    ctx = ArtifactContext(artifacts)
    py.load_context(ctx)
    sig = signature(data, example, py.predict(ctx, example))
    with in_run(uri, run_id):
        info = mlflow.pyfunc.log_model(name=name, python_model=model_cls(), artifacts=artifacts, signature=sig,
                                       input_example=example, pip_requirements=requirements())
    return info.model_uri


@contextlib.contextmanager
def in_run(uri: str, run_id: str) -> Iterator[None]:
    """``mlflow.start_run(run_id=...)`` to log into an existing run, leaving its status as it
    was: leaving the block would otherwise end it FINISHED, and a search's run logs its
    ensemble and its bagged model while the search still runs (a search stopped then must not
    look finished, nor refuse ``--resume``)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    before = client.get_run(run_id).info.status
    try:
        with mlflow.start_run(run_id=run_id):
            yield
    finally:  # a failed log_model (the search goes on without that model) too
        if before != "FINISHED":
            client.update_run(run_id, status=before)


def requirements() -> list[str]:
    """The pinned packages a logged model needs to load and predict."""
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for pkg in ("autofusion", "torch", "torchvision", "torchaudio", "mlflow", "pandas", "numpy", "pillow",
                "soundfile", "av", "scikit-learn", "scipy", "transformers", "timm"):
        try:
            reqs.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            pass
    return reqs
