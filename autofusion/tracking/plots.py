"""The plots a search draws, as PNG bytes (matplotlib, Agg): logged to MLflow by
``artifacts`` and embedded in the HTML report by ``report``.

What the search learned about fusion, readable in seconds: the validation metric of every
trial by fusion operator and by encoder (one point per trial, the best marked), and the
learning curves of the top trials on one chart; plus the best trial's own curves, the
test confusion matrix, and which inputs the search's model needs (``importance_chart``).
"""

from __future__ import annotations

import io
from typing import Any, Sequence

import numpy as np

from autofusion.metrics import best_first
from autofusion.search.records import Importance, TrialRecord

TOP_CURVES = 5  # trials drawn in the learning-curves chart
CURVE_METRICS = ("_loss", "_accuracy", "_f1_macro", "_rmse")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig: Any) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def ranked(trials: Sequence[TrialRecord], mode: str) -> list[TrialRecord]:
    """The trials with a validation value, best first (ties: the earlier trial first)."""
    ok = [t for t in trials if t.best_value is not None and np.isfinite(t.best_value)]
    return sorted(ok, key=lambda t: (best_first(t.best_value, mode), t.number))


def metric_by_choice(trials: Sequence[TrialRecord], keys: Sequence[tuple[str, str]], metric: str, mode: str,
                     best: TrialRecord | None) -> bytes | None:
    """One panel per ``(config key, title)``: each trial's best validation ``metric`` at its
    choice for that key (a fusion operator, an encoder), one point per trial, jittered so
    equal values stay visible, a tick at each choice's best; the best trial a red star.
    None when no trial has a value."""
    pts = [t for t in trials if t.best_value is not None and np.isfinite(t.best_value)]
    if not pts or not keys:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(keys), figsize=(max(4.5, 3.2 * len(keys) + 1.5), 3.4), squeeze=False,
                             sharey=True)
    rng = np.random.default_rng(0)
    for ax, (key, title) in zip(axes[0], keys):
        choices = sorted({str(t.config.get(key, "-")) for t in pts})
        for i, choice in enumerate(choices):
            here = [t for t in pts if str(t.config.get(key, "-")) == choice]
            x = i + rng.uniform(-0.12, 0.12, len(here))
            ax.scatter(x, [t.best_value for t in here], s=28, alpha=0.75, color="#3b6ea5",
                       edgecolors="white", linewidths=0.5, zorder=2)
            top = min((t.best_value for t in here), key=lambda v: best_first(v, mode))
            ax.hlines(top, i - 0.3, i + 0.3, color="#999", lw=1, zorder=1)
        if best is not None and best in pts:
            bx = choices.index(str(best.config.get(key, "-")))
            ax.scatter([bx], [best.best_value], marker="*", s=220, color="#d62728", zorder=3,
                       label=f"best (trial {best.number})")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_xticks(range(len(choices)), choices, rotation=30 if len(choices) > 3 else 0, ha="right"
                      if len(choices) > 3 else "center", fontsize=8)
        ax.set_xlim(-0.6, len(choices) - 0.4)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel(f"best {metric}")
    return png(fig)


def top_learning_curves(trials: Sequence[TrialRecord], metric: str, mode: str,
                        top: int = TOP_CURVES) -> bytes | None:
    """The validation ``metric`` per epoch of the ``top`` best trials on one chart, each
    trial's best epoch marked: a curve still rising at its last epoch wanted more epochs."""
    best = [t for t in ranked(trials, mode) if any(metric in h for h in t.history)][:top]
    if not best:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for rank, t in enumerate(best):
        ys = [h.get(metric, np.nan) for h in t.history]
        xs = range(1, len(ys) + 1)
        encoders = "+".join(str(v) for k, v in sorted(t.config.items())
                            if k.count(".") == 1 and k.startswith("encoder."))
        label = f"trial {t.number}: {t.config.get('fusion.type', '?')} · {encoders} ({t.status})"
        (line,) = ax.plot(xs, ys, marker="o", ms=3, lw=2.2 if rank == 0 else 1.3, label=label)
        if t.best_epoch is not None and t.best_epoch <= len(ys):
            ax.scatter([t.best_epoch], [ys[t.best_epoch - 1]], s=70, facecolors="none", edgecolors=line.get_color(),
                       linewidths=1.5, zorder=3)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} of the top {len(best)} trials (circle: best epoch)", fontsize=10)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return png(fig)


def trial_curves(history: list[dict[str, float]]) -> bytes | None:
    """One trial's losses and metrics per epoch (two panels)."""
    keys = sorted({k for h in history for k in h if k.endswith(CURVE_METRICS) and not k.startswith("soup_")})
    if not keys:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for k in keys:
        ax = axes[0] if k.endswith("_loss") else axes[1]
        ax.plot(range(1, len(history) + 1), [h.get(k, np.nan) for h in history], marker="o", label=k)
    for ax, title in zip(axes, ("loss", "metrics")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend(fontsize=7)
    return png(fig)


def confusion_matrix(cm: np.ndarray, classes: list[str], title: str = "test confusion matrix") -> bytes:
    """A confusion matrix with its counts (rows: true class, columns: predicted)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * len(cm), 1 + 0.5 * len(cm)))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return png(fig)


def importance_chart(*found: Importance | None) -> bytes | None:
    """One panel per split (validation, test): each input's drop in the metric when it is removed
    and when it is permuted, as bars with their 95% bootstrap intervals, most important on top.
    None when there is nothing to draw."""
    found = tuple(f for f in found if f is not None and f.inputs)
    if not found:
        return None
    plt = _plt()
    height = 1.2 + 0.45 * max(len(f.inputs) for f in found)
    fig, axes = plt.subplots(1, len(found), figsize=(4.6 * len(found) + 0.8, height), squeeze=False)
    for ax, imp in zip(axes[0], found):
        names = [i.name for i in imp.inputs][::-1]  # the most important at the top
        y = np.arange(len(names))
        for offset, kind, color in ((0.2, "removal", "#3b6ea5"), (-0.2, "permutation", "#e08a2c")):
            drops = [getattr(i, kind) for i in imp.inputs][::-1]
            values = np.array([d.value for d in drops])
            err = np.abs(np.array([[d.value - d.low, d.high - d.value] for d in drops]).T)
            ax.barh(y + offset, values, height=0.38, color=color, label=kind,
                    xerr=np.nan_to_num(err), error_kw={"elinewidth": 1, "capsize": 2, "ecolor": "#333"})
        ax.axvline(0, color="#999", lw=0.8)
        ax.set_yticks(y, names, fontsize=8)
        ax.set_xlabel(f"drop in {imp.metric}")
        ax.set_title(f"{imp.split} ({imp.rows} rows)", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, ncol=2, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    return png(fig)
