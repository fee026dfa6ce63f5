"""The hooks a trial's configuration asks for (see ``loop.TrainingHook``): one place that
turns ``train.*`` settings into the additions to plain training."""

from __future__ import annotations

from autofusion.data.prepare import PreparedData
from autofusion.metrics import DEFAULT_METRIC, metric_mode
from autofusion.train.alignment import AlignmentHook
from autofusion.train.loop import TrainingHook
from autofusion.train.reconstruction import ReconstructionHook
from autofusion.train.soup import SoupHook
from autofusion.train.staged import EncoderTraining
from autofusion.train.stopping import EarlyStopping
from autofusion.trial import TrialConfig


def hooks_for(tc: TrialConfig, data: PreparedData, *, metric: str | None = None,
              mode: str | None = None) -> list[TrainingHook]:
    """The hooks of one trial, in the order they run.

    ``metric`` and ``mode`` (the search's; default: the target's usual validation metric)
    are what early stopping watches and what ranks the epochs whose weights the checkpoint
    soup averages. The soup comes last, so that the weights it leaves in the model at the
    end are the last word.
    """
    metric = metric or DEFAULT_METRIC[data.meta.target][0]
    mode = mode or metric_mode(metric)
    hooks: list[TrainingHook] = []
    if tc.strategy in ("staged", "finetune"):  # pretrained encoders beyond frozen (does nothing without them)
        hooks.append(EncoderTraining(tc))
    if tc.align_weight > 0:
        hooks.append(AlignmentHook(tc.align_weight))
    if tc.reconstruct_weight > 0:
        hooks.append(ReconstructionHook(tc.reconstruct_weight))
    if tc.patience > 0:
        hooks.append(EarlyStopping(tc.patience, metric, mode))
    if tc.soup_k >= 2:
        hooks.append(SoupHook(tc.soup_k, metric, mode))
    return hooks
