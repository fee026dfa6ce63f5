"""The model a user would write by hand, and the first trials of a new search built from it.

With a small budget a model-based sampler otherwise settles on whichever fusion its few
random start-up trials happened to favour, and can end below the model a user would have
written by hand; so the search starts from that model, and every fusion point (the choice
that matters most) gets one look before the sampler narrows down.

Those looks keep the hand-built model's encoders, the strongest each modality offers
(:func:`strongest_encoders`): a classical and a pretrained encoder together where the space
has a pretrained one (``tfidf+hf_text``, ``pixels+timm``: the built-in and assembled spaces
add them when the weights are here), else the pretrained one, else the first choice (in the
built-in spaces the classical ones: TF-IDF, pixel statistics, MFCC statistics), with
pretrained encoders frozen. The fusions are then compared on equal inputs rather than on
whichever encoders each happened to draw, and on a CPU they cost seconds each (frozen
encoders read cached outputs) where a CNN trained from scratch costs a minute, so the
sampler's own trials, which range over every encoder, get most of the time budget.
"""

from __future__ import annotations

import math
import random
from typing import Any, Sequence

from autofusion.metrics import DEFAULT_LOSS, is_macro
from autofusion.spaces.distributions import space_distributions
from autofusion.spaces.load import Space
from autofusion.spaces.pretrained import is_pretrained
from autofusion.trial import PAIR

# What a user would write by hand without a search (the quality benchmark's fixed baseline):
# preferred where the space offers it, else the first choice or the middle of the range.
HAND_BUILT: dict[str, Any] = {
    "fusion.type": "mid", "fusion.weights": "fixed", "optimizer.type": "adamw", "optimizer.lr": 3e-3,
    "optimizer.weight_decay": 1e-2, "lr_schedule.type": "none", "head.hidden": 128, "head.dropout": 0.1,
    "train.batch_size": 32, "train.augment": "none",
    # training strategies off, as a hand-built model has them (autofusion/train/)
    "train.align_weight": 0.0, "train.reconstruct_weight": 0.0, "train.missing": "zero", "train.soup_k": 0,
    "train.strategy": "frozen",  # pretrained encoders on their cached outputs: seconds per trial
}


IMBALANCED = 1.2  # largest / smallest training class from which the hand-built model weights classes


def default_trial(space: Space, target: str, *, class_counts: Sequence[int] = (),
                  metric: str | None = None) -> dict[str, Any]:
    """The hand-built configuration of ``space``: every parameter at a sensible default.

    Its loss is the target's usual one, except for classes of unequal size (``class_counts``,
    largest at least 1.2x the smallest) ranked by a metric that weighs classes equally
    (``metric``, e.g. ``val_f1_macro``): then cross-entropy with classes weighted by inverse
    frequency, when the space offers it. Plain cross-entropy fits the class priors, so on
    imbalanced data its decisions favour the majority class (the prior shifts every decision
    towards it); weighting by inverse frequency trains for balanced error instead, which is what
    a macro metric scores. On balanced classes the weights are all 1 and the two coincide
    (below 1.2x they stay within 10% of 1, and the plain loss is kept).
    """
    loss = DEFAULT_LOSS[target]
    if target == "classification" and metric is not None and is_macro(metric) and imbalanced(class_counts):
        loss = "weighted_cross_entropy"
    preferred = {**HAND_BUILT, "loss.type": loss, **strongest_encoders(space)}
    return {name: _default_value(d, preferred.get(name)) for name, d in space_distributions(space).items()}


def strongest_encoders(space: Space) -> dict[str, str]:
    """Per modality (``encoder.text``), the choice the hand-built model takes: a pair with a
    pretrained half (``tfidf+hf_text``) over a pretrained encoder alone over the first choice."""
    def rank(m: str, name: str) -> int:
        choices = space.file.encoders[m].choices
        pretrained = [is_pretrained(m, h, choices[h]) for h in name.split(PAIR)]
        return 2 if len(pretrained) > 1 and any(pretrained) else int(any(pretrained))

    out = {}
    for m in space.modalities:
        names = list(space.file.encoders[m].choices)
        out[f"encoder.{m}"] = max(names, key=lambda n: rank(m, n))  # the first of the best rank
    return out


def imbalanced(class_counts: Sequence[int]) -> bool:
    """Whether the largest training class is at least :data:`IMBALANCED` times the smallest."""
    counts = [c for c in class_counts if c > 0]
    return len(counts) >= 2 and max(counts) >= IMBALANCED * min(counts)


def _default_value(d: Any, wanted: Any) -> Any:
    """``wanted`` when the Optuna distribution ``d`` holds it, else its first choice or middle value."""
    import optuna.distributions as od

    if wanted is not None:
        try:
            if d._contains(d.to_internal_repr(wanted)):
                return wanted
        except (ValueError, TypeError):
            pass
    if isinstance(d, od.CategoricalDistribution):
        return d.choices[0]
    middle = math.sqrt(d.low * d.high) if d.log else (d.low + d.high) / 2  # Optuna: log needs low > 0
    if d.step:
        middle = d.low + round((middle - d.low) / d.step) * d.step
    return round(middle) if isinstance(d, od.IntDistribution) else float(middle)


def first_trials(space: Space, target: str, num_trials: int, seed: int, *, class_counts: Sequence[int] = (),
                 metric: str | None = None) -> list[dict[str, Any]]:
    """The first trials of a new search: the hand-built default configuration (see
    :func:`default_trial` for ``class_counts`` and ``metric``), then each other fusion operator
    once in a seeded order with the default's encoders (the sampler fills in their other
    parameters), up to two thirds of the budget."""
    default = default_trial(space, target, class_counts=class_counts, metric=metric)
    fusions = list(space.file.fusion.choices) if space.file.fusion is not None else []
    others = [f for f in fusions if f != default.get("fusion.type", fusions[0] if fusions else None)]
    random.Random(seed).shuffle(others)
    same = {k: v for k, v in default.items()  # the default's encoders, and how pretrained ones train
            if (k.startswith("encoder.") and k.count(".") == 1) or k == "train.strategy"}
    return [default, *({"fusion.type": f, **same} for f in others)][: max(1, (2 * num_trials) // 3)]
