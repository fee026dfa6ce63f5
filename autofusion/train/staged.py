"""How a trial's pretrained encoders train beyond ``frozen`` (``train.strategy``):

* ``staged``: fusion and head first train on the encoders' cached frozen outputs (seconds an
  epoch); after ``frozen_epochs`` epochs the encoders' last ``unfreeze_blocks`` blocks (0: all
  of them) are unfrozen, the model reads model inputs instead, and those blocks train at the
  learning rate times ``encoder_lr_factor`` for the remaining epochs;
* ``finetune``: every encoder parameter trains from the start, at that lower rate.

The encoders' parameters get an optimizer group of their own at ``encoder_lr_factor`` of the
base rate, added before the schedule is built, so it follows the same schedule (warm-up,
cosine, ...). A ``frozen`` trial needs no hook: its encoders have no backbone at all.
"""

from __future__ import annotations

import torch
from torch import nn

from autofusion.data.prepare import PreparedData
from autofusion.models.build import FusionModel
from autofusion.models.encoders._pretrained import PretrainedEncoder, top_blocks
from autofusion.models.extractors import input_key
from autofusion.train.loop import TrainingHook
from autofusion.trial import TrialConfig


def frozen_epochs(tc: TrialConfig) -> int:
    """The epochs a staged trial trains on frozen outputs: ``tc.frozen_epochs`` (0: half), and
    at least one epoch is left to fine-tune when there are two or more."""
    wanted = tc.frozen_epochs or max(1, tc.epochs // 2)
    return max(1, min(wanted, tc.epochs - 1)) if tc.epochs > 1 else tc.epochs


class EncoderTraining(TrainingHook):
    """Staged unfreezing or fine-tuning of a model's pretrained encoders (see the module)."""

    def __init__(self, tc: TrialConfig) -> None:
        self.staged = tc.strategy == "staged"
        self.factor = tc.encoder_lr_factor
        self.switch_at = frozen_epochs(tc) if self.staged else 0
        self.blocks = tc.unfreeze_blocks
        self.unfreeze: list[nn.Parameter] = []
        self.group: dict | None = None

    def start(self, model: FusionModel, opt: torch.optim.Optimizer, data: PreparedData, tc: TrialConfig) -> None:
        encoders = [e for e in model.encoders.modules()  # a pair's pretrained half too
                    if isinstance(e, PretrainedEncoder) and e.backbone is not None]
        if not encoders:
            return
        backbone = [p for e in encoders for p in e.backbone.parameters()]
        self.unfreeze = [p for e in encoders for p in top_blocks(e, self.blocks)] if self.staged else backbone
        for p in backbone:  # staged: all frozen until the switch; finetune: all trained
            p.requires_grad_(not self.staged)
        taken = {id(p) for p in backbone}
        for g in opt.param_groups:
            g["params"] = [p for p in g["params"] if id(p) not in taken]
        opt.add_param_group({"params": self.unfreeze, "lr": opt.param_groups[0]["lr"] * self.factor})
        self.group = opt.param_groups[-1]

    def epoch_end(self, epoch: int, metrics: dict[str, float], model: FusionModel) -> bool:
        if self.staged and self.group is not None and epoch == self.switch_at:
            for p in self.unfreeze:
                p.requires_grad_(True)
            for name, key in model.feature_keys.items():
                enc = model.encoders[model.encoder_of[name]]
                if key is not None and any(isinstance(e, PretrainedEncoder) for e in enc.modules()):
                    model.feature_keys[name] = input_key(key)  # model inputs through the backbone from now on
        return False
