"""Scores of a model's outputs against targets, and the loss the search reports beside them.

Class scores come from one confusion matrix made with ``torch.bincount``; multi-label and
regression scores from torchmetrics, imported only for them: importing torchmetrics costs
about 3 s on two cores (it loads torchvision, scipy.signal and torch._dynamo), once in every
trial process and in the driver, which a classification search no longer pays."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from autofusion.data.prepare import DataMeta
from autofusion.metrics import DEFAULT_LOSS, PER_CLASS_LIMIT, class_keys
from autofusion.models.losses import build_loss


def output_metrics(out: Tensor, y: Tensor, meta: DataMeta, *, prefix: str,
                   loss_fn: nn.Module | None = None) -> dict[str, float]:
    """Loss (the target kind's default loss unless given) and scores of outputs already on
    the CPU, keys prefixed."""
    if loss_fn is None:
        loss_fn = build_loss(DEFAULT_LOSS[meta.target], {}, meta.target, meta.class_counts)
    res = {"loss": float(loss_fn.to("cpu")(out, y)), **score(out, y, meta)}
    return {f"{prefix}_{k}": v for k, v in res.items()}


def score(out: Tensor, y: Tensor, meta: DataMeta) -> dict[str, float]:
    """Scores of outputs against targets: class scores (and, from class scores rather than
    ids, ROC-AUC, PR-AUC and log loss), or torchmetrics' multi-label and regression scores."""
    if meta.target == "classification":
        res = class_scores(class_ids(out), y, meta.classes)
        if out.ndim > 1:
            res.update(probability_scores(torch.softmax(out.double(), dim=-1).numpy(), y.long().numpy()))
        return res
    import torchmetrics.functional as MF

    if meta.target == "multilabel":
        n = meta.num_outputs
        yi = y.int()
        ranked = ranking_scores(torch.sigmoid(out.double()).numpy(), y.numpy() > 0.5)
        return {
            "f1_macro": float(MF.f1_score(out, yi, task="multilabel", num_labels=n, average="macro")),
            "f1_micro": float(MF.f1_score(out, yi, task="multilabel", num_labels=n, average="micro")),
            "exact_match": float(MF.exact_match(out, yi, task="multilabel", num_labels=n)),
            **ranked,
        }
    return {
        "rmse": float(MF.mean_squared_error(out, y, squared=False)),
        "mae": float(MF.mean_absolute_error(out, y)),
        "r2": float(MF.r2_score(out.flatten(), y.flatten())) if len(y) > 1 else float("nan"),  # undefined on one row
    }


LOG_LOSS_EPS = 1e-15  # probabilities are clipped to [eps, 1 - eps] before the log


def probability_scores(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """ROC-AUC and PR-AUC (average precision), one-vs-rest and macro over the classes with
    both positives and negatives (for two classes: those of the second class, as scikit-learn
    scores binary problems), and the log loss of class probabilities ``[N, K]``."""
    k = probs.shape[1]
    onehot = np.eye(k, dtype=bool)[y]
    res = ranking_scores(probs[:, 1:] if k == 2 else probs, onehot[:, 1:] if k == 2 else onehot)
    p = np.clip(probs[np.arange(len(y)), y], LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    res["log_loss"] = float(-np.log(p).mean()) if len(y) else float("nan")
    return res


def ranking_scores(scores: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """ROC-AUC and average precision of each column of ``scores`` ``[N, C]`` against the bool
    ``truth`` ``[N, C]``, averaged over the columns with both positives and negatives (NaN when
    none has)."""
    aucs, aps = [], []
    for j in range(scores.shape[1]):
        pos = truth[:, j]
        if pos.all() or not pos.any():
            continue
        aucs.append(roc_auc(scores[:, j], pos))
        aps.append(average_precision(scores[:, j], pos))
    nan = float("nan")
    return {"roc_auc": float(np.mean(aucs)) if aucs else nan, "pr_auc": float(np.mean(aps)) if aps else nan}


def roc_auc(s: np.ndarray, pos: np.ndarray) -> float:
    """The area under the ROC curve: the chance that a random positive scores above a random
    negative, ties counting half (the Mann-Whitney U statistic, with tied ranks averaged)."""
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # 1-based, ties averaged
    n_pos = int(pos.sum())
    n_neg = len(s) - n_pos
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(s: np.ndarray, pos: np.ndarray) -> float:
    """Average precision: the precision at each distinct score threshold, weighted by the
    recall it adds (scikit-learn's ``average_precision_score``, no interpolation)."""
    order = np.argsort(-s, kind="mergesort")
    s, hits = s[order], pos[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last row of each distinct score
    tp = np.cumsum(hits)[last]
    precision = tp / (last + 1)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def class_scores(pred: Tensor, y: Tensor, classes: list[str]) -> dict[str, float]:
    """Accuracy, macro F1, recall and precision of predicted class ids, and (up to
    ``PER_CLASS_LIMIT`` classes) each class's recall and precision (``recall.<class>``).

    Macro averages run over the classes present in ``y`` or predicted (a class absent from
    both says nothing); a class never predicted has precision 0, so a model that always
    predicts the majority class scores at most 1/K of a perfect macro F1 and recall.
    """
    n = len(classes)
    s = count_scores(class_counts(pred, y, n))
    out = {k: float(s[k]) for k in ("accuracy", "f1_macro", "recall_macro", "precision_macro")}
    if n <= PER_CLASS_LIMIT:
        for key, r, p in zip(class_keys(classes), s["recall"].tolist(), s["precision"].tolist()):
            out[f"recall.{key}"] = r
            out[f"precision.{key}"] = p
    return out


def count_scores(m: Tensor) -> dict[str, Tensor]:
    """The scores of :func:`class_scores` from confusion matrices ``[..., K, K]`` (rows true
    classes), batched over the leading dimensions: ``accuracy`` and the macro averages
    ``[...]``, each class's ``recall`` and ``precision`` ``[..., K]``."""
    m = m.double()
    tp, support, predicted = m.diagonal(dim1=-2, dim2=-1), m.sum(dim=-1), m.sum(dim=-2)
    recall = torch.where(support > 0, tp / support.clamp(min=1), torch.zeros_like(tp))
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    f1 = torch.where(recall + precision > 0, 2 * recall * precision / (recall + precision).clamp(min=1e-12),
                     torch.zeros_like(tp))
    seen = ((support > 0) | (predicted > 0)).double()
    k = seen.sum(dim=-1).clamp(min=1)
    return {"accuracy": tp.sum(dim=-1) / m.sum(dim=(-2, -1)).clamp(min=1), "f1_macro": (f1 * seen).sum(dim=-1) / k,
            "recall_macro": (recall * seen).sum(dim=-1) / k, "precision_macro": (precision * seen).sum(dim=-1) / k,
            "recall": recall, "precision": precision}


def class_ids(out: Tensor) -> Tensor:
    """Predicted class ids from scores per class ([N, C]), or ids given as they are ([N])."""
    return out.argmax(dim=-1) if out.ndim > 1 else out


def class_counts(pred: Tensor, y: Tensor, num_classes: int) -> Tensor:
    """The confusion matrix of predicted class ids: rows true classes, columns predicted."""
    pred, y = pred.long().flatten(), y.long().flatten()
    return torch.bincount(y * num_classes + pred, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@torch.no_grad()
def confusion(out: Tensor, y: Tensor, num_classes: int) -> np.ndarray:
    """The confusion matrix of outputs (scores per class, or class ids) against class ids."""
    return class_counts(class_ids(out), y, num_classes).numpy()
