"""The best trial (and the ensemble, when one is kept), once more: models rebuilt from their
checkpoints and their one evaluation on the held-out test split (the search itself only
ever looks at validation)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autofusion.data.prepare import PreparedData
from autofusion.data.splits import TEST
from autofusion.models.build import build_model
from autofusion.models.trees import ROW_MODELS, TreeModel
from autofusion.search.ensemble import as_outputs, probabilities
from autofusion.search.records import TrialRecord
from autofusion.train.loop import predict
from autofusion.train.metrics import confusion, output_metrics
from autofusion.train.trees import block_columns
from autofusion.trial import TrialConfig


def load_trial_model(ckpt: Path, rec: TrialRecord, data: PreparedData) -> tuple[Any, TrialConfig | None]:
    """The trial's model with the weights of its checkpoint (loaded as weights only), in eval
    mode; the trees member's booster (and no trial config) for a trees trial."""
    if rec.kind in ROW_MODELS:
        return TreeModel.load(ckpt), None
    tc = TrialConfig.from_flat(rec.config, data.meta.modalities)
    tc = replace(tc, epochs=rec.planned_epochs or tc.epochs)
    model = build_model(tc, data.meta)
    model.load_state_dict(torch.load(ckpt / "model.pt", map_location="cpu", weights_only=True))
    return model.eval(), tc


def test_evaluation(model: Any, data: PreparedData) -> tuple[dict[str, float], np.ndarray | None]:
    """The one evaluation on the test split: its metrics and, for classification, its
    confusion matrix (None otherwise, or without a test split)."""
    idx = data.indices(TEST)
    if len(idx) == 0:
        return {}, None
    out, y = outputs(model, data, idx)
    matrix = confusion(out, y, data.meta.num_outputs) if data.meta.target == "classification" else None
    return output_metrics(out, y, data.meta, prefix="test"), matrix


def outputs(model: Any, data: PreparedData, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """A model's raw outputs on rows ``idx`` (a neural model's, or the trees member's
    log-probabilities) and their targets."""
    if isinstance(model, TreeModel):
        out = model.outputs(block_columns(data, model.features.blocks, idx))
        return torch.from_numpy(out), torch.from_numpy(data.targets[idx])
    return predict(model, data, idx, torch.device("cpu"))


def ensemble_test_evaluation(models: list[Any], weights: list[float],
                             data: PreparedData) -> tuple[dict[str, float], np.ndarray | None]:
    """The ensemble's one evaluation on the test split: the weighted average of its members'
    probabilities (or regression outputs), scored like a single model's outputs."""
    idx = data.indices(TEST)
    if len(idx) == 0:
        return {}, None
    avg, y = None, None
    for model, w in zip(models, weights):
        out, y = outputs(model, data, idx)
        p = w * probabilities(out, data.meta.target).astype(np.float64)
        avg = p if avg is None else avg + p
    out = as_outputs(avg, data.meta.target)
    matrix = confusion(out, y, data.meta.num_outputs) if data.meta.target == "classification" else None
    return output_metrics(out, y, data.meta, prefix="test"), matrix
