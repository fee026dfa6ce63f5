"""Real data: does autofusion's default search beat ten-line scikit-learn models?

On the real data sets in ``../shared/data/`` (memes: image + text, offensive or not; houses:
four photos + tabular fields, price regression; imdb: four text fields + numbers, drama or not,
Shi et al. 2021's benchmark split with AutoGluon's published ROC-AUC) and on any manifest
given with ``--data``,
every method reads the same train/val/test split and is scored on the same test rows by the
same metric function, from its test predictions:

- scikit-learn references, fitted on train: classification: class-balanced logistic
  regression (C picked from a small grid on the val rows' first primary metric: accuracy;
  imdb: ROC-AUC) on TF-IDF word (1-2)- and char (2-5)-grams of the text columns joined, on
  grey 32x32 pixels of images, on MFCC mean/std of audio, on grey 16x16 frame mean/std of
  video, on tabular fields; early fusion (one model on every block, each scaled to unit row
  norm) and late fusion (mean of the per-modality probabilities); gradient-boosted trees
  (HistGradientBoosting) on the numeric fields; majority class (train frequencies as its
  probabilities). Regression: ridge on the (log) target (alpha picked from a grid by
  RidgeCV's leave-one-out on the train rows) from tabular fields (numbers standardised,
  skewed ones logged, categories one-hot), from pixels (mean over the image columns), early
  and late fusion; the train mean.
- the fixed hand-built neural model: ``autofusion search ... --num-trials 1`` (a search's
  first trial is the model you would write by hand: concat + MLP, AdamW 3e-3, batch 32);
- autofusion's default search: the installed CLI run as a user would, ``autofusion search
  --data M [--task T] [--columns ...] --tracking-uri ... --experiment ... --quiet`` with no
  tuning flags, then ``autofusion predict`` on the test rows; ``--repeats N`` runs it N
  times (same default seed: is it steady?) and reports the mean (min-max); ``--search-seeds
  0,1,2`` runs it once per seed instead (``--seed S``: the spread a user meets, since the
  trials' sampling and initial weights are one draw per seed), the fixed model too;
- ``--methods pretrained``: the same default search after ``autofusion weights add`` of the two
  real backbones in ``../shared/weights/`` (MiniLM-L6, EfficientNet-Lite0), with the one-off
  feature-cache time; its own verdict line compares it with the references and today's search.

- published scores (``Published`` in a ``DATASETS`` entry; imdb: AutoGluon's test ROC-AUC
  0.874): fixed rows with their source in the note, always printed; the data set's verdict
  then also says whether the default search (its mean over seeds or repeats) beats each, or by
  how much it falls short.

Classification is scored on accuracy and macro-F1 from the predicted labels, and on ROC-AUC
and log loss from the class probabilities (``predict_proba``; ``autofusion predict``'s
``prob_<class>`` columns): of two classes ROC-AUC is the second sorted label's (imdb: "1"),
of more the macro one-vs-rest mean. The verdict is on a data set's ``primary`` metrics (imdb:
ROC-AUC, the benchmark's; others: accuracy and macro-F1, or R2).

Where the CLI cannot run a data set yet, its rows say "not supported yet" with the CLI's
one-line error.

Run it from the repository's root:

    python -m benchmarks.realdata                                   # memes and houses, 1 search each
    python -m benchmarks.realdata --repeats 3 --json realdata.json  # three runs, one seed: steady?
    python -m benchmarks.realdata --search-seeds 0,1,2              # one run per seed: the spread
    python -m benchmarks.realdata --datasets memes --methods sklearn
    python -m benchmarks.realdata --datasets imdb --methods sklearn,search --search-seeds 0,1,2
    python -m benchmarks.realdata --data my.csv --columns image=poster,text=plot --label genre
    python -m benchmarks.realdata --datasets memes --search-args "--num-trials 24"
    python -m benchmarks.realdata --smoke                           # tiny generated data: CI runs this

Prints one markdown table per data set (method, test metrics, the primary metric on the
validation rows, wall seconds) and whether the default search beats the best scikit-learn
reference (and a published score, where there is one) on the primary metric(s). The
validation column shows whether a method that wins on test could have been told apart on the
rows every choice is made on (the search's trials, scikit-learn's C): on a small split the two
can disagree. Nothing here imports autofusion's
library to train or predict: the CLI is the interface that is measured.

The package, one module per step (dependencies point down this list):

    datasets.py    DATASETS (the built-in data sets), Dataset, reading a manifest: roles, split
    features.py    the scikit-learn references' feature blocks, one per modality
    metrics.py     the metrics every method is scored by, the primary ones, Row (a table line), published rows
    references.py  the scikit-learn references: per modality, early/late fusion, trivial
    runs.py        `autofusion search` / `autofusion predict` through the CLI, scored here
    pretrained.py  the search with the shelf weights added, and its verdict
    methods.py     METHODS (name -> rows), Plan (how the neural runs go), bench
    report.py      the markdown table, the verdict, the JSON record
    cli.py         the options and the loop over data sets (``__main__.py`` calls its main)

To add a data set: one ``DATASETS`` entry in ``datasets.py`` (``builtin("name", roles=...,
label=..., cli=[...])``, optionally ``primary=[...]``, ``published=(Published(...),)`` and a
``note`` for its heading; ``--datasets name`` then picks it). A new metric goes in
``metrics.score`` (and ``primary_metrics`` if the verdict is on it; ``report.HEADINGS`` names
its column, ``report.table_keys`` shows it). To add a method: one function ``(Dataset, Plan) -> list[Row]`` in
``methods.py`` (or its own module) and one ``METHODS`` entry; ``--methods name`` then runs it,
its rows printed in ``METHODS``' order.
"""

from __future__ import annotations

from .cli import main

__all__ = ["main"]
