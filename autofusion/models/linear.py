"""The linear member's model: scikit-learn's class-balanced logistic regression (ridge for a
regression) over the same feature row as the trees member (``models.trees``), unreduced: the
whole TF-IDF vocabulary, the tabular numbers with their missing indicators, each category one
column, every input's block scaled to a mean row norm of one; over every input, or over one
modality's inputs alone (``train.trees.linear_inputs``). It is what wins on a few hundred
noisy rows (the memes reference: TF-IDF + logistic regression), and it errs differently from
the trees and the networks, which is what an ensemble needs.

Fitted, it is plain arrays (coefficients and intercepts as ``.npy``; nothing pickled) that
answer like a LightGBM booster (:class:`LinearBooster`), so the trees member's model, serving,
bagging and ensemble code carry it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

LINEAR = "linear"  # TrialRecord.kind of the linear member, and its name in configs, tags and ensembles


@dataclass
class LinearBooster:
    """A fitted linear model as arrays. ``predict`` answers as LightGBM's booster does: the
    second class's probability of two, every class's probability of more (``[N, K]``, zero
    for a class the training rows lacked), or the prediction of a regression.

    Attributes:
        coef: ``[C, F]`` (one row for two classes or a regression).
        intercept: ``[C]``.
        classes: the class ids the training rows held (none for a regression).
        num_classes: the classes of the data.
    """

    coef: np.ndarray
    intercept: np.ndarray
    classes: list[int]
    num_classes: int
    best_iteration: int = 0  # LightGBM's attribute: all there is

    @classmethod
    def of(cls, estimator: Any, num_classes: int) -> "LinearBooster":
        """From a fitted scikit-learn ``LogisticRegression`` or ``Ridge``."""
        coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=np.float64))
        intercept = np.atleast_1d(np.asarray(estimator.intercept_, dtype=np.float64))
        classes = [int(c) for c in getattr(estimator, "classes_", [])]
        return cls(coef, intercept, classes, num_classes)

    def predict(self, x: Any, num_iteration: int | None = None) -> np.ndarray:
        from scipy.special import expit, softmax

        z = np.asarray(x @ self.coef.T) + self.intercept
        if not self.classes:
            return z[:, 0]
        probs = np.zeros((z.shape[0], self.num_classes))
        if len(self.classes) == 2 and z.shape[1] == 1:
            probs[:, self.classes[1]] = expit(z[:, 0])
            probs[:, self.classes[0]] = 1.0 - probs[:, self.classes[1]]
        else:
            probs[:, self.classes] = softmax(z, axis=1)
        return probs[:, 1] if self.num_classes == 2 else probs

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "coef.npy", self.coef)
        np.save(folder / "intercept.npy", self.intercept)
        np.save(folder / "classes.npy", np.asarray(self.classes, dtype=np.int64))

    @classmethod
    def load(cls, folder: Path, num_classes: int) -> "LinearBooster":
        return cls(np.load(folder / "coef.npy", allow_pickle=False), np.load(folder / "intercept.npy", allow_pickle=False),
                   [int(c) for c in np.load(folder / "classes.npy", allow_pickle=False)], num_classes)
