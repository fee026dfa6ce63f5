"""The gradient-boosted trees member: LightGBM over one flat row of features per sample, built
from what the search already has for each input (AutoGluon's multimodal result is a weighted
ensemble of neural networks and tree models fed the tabular fields and text features).

Each input becomes a block of columns:

- the tabular fields: standardised numbers (NaN where missing: LightGBM learns where a
  missing value goes) and category ids, declared categorical;
- an input with a fitted feature extractor that gives one array (TF-IDF of a text column,
  pixel statistics of an image, MFCC statistics of a clip): its features, reduced to
  ``MAX_COLUMNS`` components by a truncated SVD fitted on the training rows when wider (a
  40,000-column TF-IDF becomes 64 columns of its main directions);
- an input a frozen pretrained encoder has embedded (the search's feature cache: MiniLM of a
  text field, EfficientNet of a photo): its pooled embedding, each row scaled to unit length
  (sentence embeddings are compared by angle), beside the input's classical block. On imdb a
  logistic regression over the fields and TF-IDF scored 0.817 test ROC-AUC, 0.848 with each
  text field's MiniLM embedding added (ten validation splits). Serving runs the encoder's
  backbone, saved with the member (``autofusion.serving.trees``).

The linear member (``models.linear``) reads the same blocks unreduced (``linear=True``): the
numbers with missing ones at 0 beside their indicators, each category one column, every block
scaled to a mean row norm of one on the training rows, as one sparse row.

Inputs without such features (a raw clip, a video) are left out. What is fitted (the SVD
components, the block layout) is saved as JSON and ``.npy`` arrays and the booster in
LightGBM's own text format: nothing is pickled, and serving builds the same rows from raw
inputs with the same fitted extractors (``autofusion.serving.trees``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autofusion.models.linear import LINEAR, LinearBooster

MAX_COLUMNS = 64  # a block wider than this is reduced to this many SVD components
KIND = "lightgbm"  # TrialRecord.kind of a trees member, and its name in configs and tags
ROW_MODELS = (KIND, LINEAR)  # the members over one feature row per sample, fitted on the driver


@dataclass
class Block:
    """One input's columns in the feature row.

    Attributes:
        input: the model input it reads.
        key: the feature extractor whose array ``x`` it reads, or None for the modality's own
            array (the tabular fields).
        numeric: tabular only: the standardised numbers leading its array (then as many
            missing indicators, then ``categories`` category ids).
        categories: tabular only: the category-id columns ending its array.
        width: its columns in the feature row (after any reduction), set when fitted.
        output: the extractor's array it reads: ``x``, or ``pooled``, a frozen pretrained
            encoder's embedding (``key`` is then that encoder's frozen-outputs key).
    """

    input: str
    key: str | None
    numeric: int = 0
    categories: int = 0
    width: int = 0
    output: str = "x"

    @property
    def embedding(self) -> bool:
        """Whether it reads a pretrained encoder's pooled embedding."""
        return self.output != "x"

    @property
    def id(self) -> str:
        """Its name in the feature layout: the input's, or the input's and the encoder's for an
        embedding (an input may have both blocks)."""
        return f"{self.input}|{self.key}" if self.embedding else self.input

    def columns(self, x: Any) -> Any:
        """This block's columns before any reduction, from the input's array (the tabular
        modality's array, the extractor's ``x``: dense or sparse, or an embedding: each row
        scaled to unit length)."""
        if self.embedding:
            x = np.asarray(x, dtype=np.float32)
            return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        if self.key is not None:
            return x
        x = np.asarray(x, dtype=np.float32)
        num = x[:, : self.numeric].copy()
        num[x[:, self.numeric: 2 * self.numeric] > 0.5] = np.nan
        return np.concatenate([num, x[:, 2 * self.numeric:]], axis=1)


@dataclass
class TreeFeatures:
    """The blocks of the feature row and the SVD components of the reduced ones."""

    blocks: list[Block]
    components: dict[str, np.ndarray] = field(default_factory=dict)  # block id -> [MAX_COLUMNS, columns]
    linear: bool = False  # the linear member's layout: unreduced, one-hot categories, scaled blocks
    widths: dict[str, list[int]] = field(default_factory=dict)  # linear: block id -> each category's columns
    scales: dict[str, float] = field(default_factory=dict)  # linear: block id -> its block's factor

    def fit(self, columns: dict[str, Any], seed: int = 0) -> None:
        """Fits the SVD of every extractor block wider than ``MAX_COLUMNS`` on the training
        rows' ``columns`` (by block id), and records each block's width (the linear layout: each
        category's columns and each block's scale)."""
        from sklearn.decomposition import TruncatedSVD

        if self.linear:
            self._fit_linear(columns)
            return
        for b in self.blocks:
            x = columns[b.id]
            if b.key is not None and x.shape[1] > MAX_COLUMNS and x.shape[0] > MAX_COLUMNS:
                svd = TruncatedSVD(n_components=MAX_COLUMNS, random_state=seed).fit(x)
                self.components[b.id] = svd.components_.astype(np.float32)
            b.width = MAX_COLUMNS if b.id in self.components else int(x.shape[1])

    def _fit_linear(self, columns: dict[str, Any]) -> None:
        for b in self.blocks:
            x = columns[b.id]
            if b.key is None:  # category ids seen in training: 0 missing, 1 unknown, then the known ones
                ids = np.nan_to_num(np.asarray(x[:, b.numeric:], dtype=np.float64), nan=0.0)
                self.widths[b.id] = [max(int(ids[:, j].max(initial=1)) + 1, 2) for j in range(b.categories)]
            block = self._linear_block(b, x)
            norm = float(np.sqrt(np.asarray(block.multiply(block).sum(axis=1))).mean()) if block.shape[0] else 0.0
            self.scales[b.id] = 1.0 / norm if norm > 0 else 1.0
            b.width = int(block.shape[1])

    def _linear_block(self, b: Block, x: Any) -> Any:
        """One block's unreduced columns as a sparse matrix (the linear layout, unscaled)."""
        import scipy.sparse as sp

        if b.key is not None:
            return sp.csr_matrix(x, dtype=np.float32)
        x = np.asarray(x, dtype=np.float32)
        num = x[:, : b.numeric]
        missing = np.isnan(num)
        parts = [sp.csr_matrix(np.concatenate([np.where(missing, 0.0, num), missing], axis=1).astype(np.float32))]
        rows = np.arange(len(x))
        for j, width in enumerate(self.widths[b.id]):
            ids = np.nan_to_num(x[:, b.numeric + j], nan=0.0).astype(np.int64)
            ids = np.where((ids >= 0) & (ids < width), ids, 1)  # a category training never saw: unknown
            parts.append(sp.csr_matrix((np.ones(len(x), np.float32), (rows, ids)), shape=(len(x), width)))
        return sp.hstack(parts, format="csr")

    def matrix(self, columns: dict[str, Any]) -> Any:
        """The feature rows ``[N, F]`` (float32, NaN where a number is missing) from each
        block's columns (by block id); the linear layout's as a sparse matrix."""
        return self.join([self.block(b, columns[b.id]) for b in self.blocks])

    def block(self, b: Block, x: Any) -> Any:
        """One block's part of :meth:`matrix` from its columns ``x``."""
        if self.linear:
            return self._linear_block(b, x) * self.scales[b.id]
        if b.id in self.components:
            x = x @ self.components[b.id].T
        return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float32)

    def join(self, parts: list[Any]) -> Any:
        """The blocks' parts side by side, as :meth:`matrix` gives them."""
        if self.linear:
            import scipy.sparse as sp

            return sp.hstack(parts, format="csr", dtype=np.float32)
        return np.concatenate(parts, axis=1)

    def categorical(self) -> list[int]:
        """The columns LightGBM reads as categories: the tabular category ids."""
        if self.linear:  # categories are one-hot columns there
            return []
        out, start = [], 0
        for b in self.blocks:
            if b.key is None:
                out.extend(range(start + b.numeric, start + b.numeric + b.categories))
            start += b.width
        return out

    def save(self, folder: Path, shared: Path | None = None) -> None:
        """Writes the layout and the SVD components into ``folder``; with ``shared`` (a folder
        the members of an ensemble share), each distinct array once there, by its content."""
        folder.mkdir(parents=True, exist_ok=True)
        names = {}
        for i, (name, array) in enumerate(self.components.items()):
            if shared is None:
                names[name] = f"svd-{i}.npy"
                np.save(folder / names[name], array)
                continue
            file = shared / f"{hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]}.npy"
            if not file.exists():
                shared.mkdir(parents=True, exist_ok=True)
                np.save(file, array)
            names[name] = Path(os.path.relpath(file, folder)).as_posix()  # ../../svd/<hash>.npy
        (folder / "features.json").write_text(json.dumps({"blocks": [asdict(b) for b in self.blocks],
                                                          "components": names, "linear": self.linear,
                                                          "widths": self.widths, "scales": self.scales}, indent=1))

    @classmethod
    def load(cls, folder: Path) -> "TreeFeatures":
        spec = json.loads((folder / "features.json").read_text())
        return cls([Block(**b) for b in spec["blocks"]],
                   {name: np.load(folder / file, allow_pickle=False) for name, file in spec["components"].items()},
                   bool(spec.get("linear", False)), spec.get("widths", {}), spec.get("scales", {}))


@dataclass
class TreeModel:
    """A fitted LightGBM booster, or the linear member's :class:`LinearBooster`, over
    :class:`TreeFeatures`' rows.

    ``outputs`` gives what a neural model's outputs give the metrics: log-probabilities
    ``[N, K]`` for classes (their softmax is the probabilities), or the predictions ``[N, 1]``
    of a regression (on the scale the targets were learned on).
    """

    booster: Any
    features: TreeFeatures
    target: str
    num_classes: int
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """``lightgbm`` or ``linear``: the member's kind in records, tags and ensembles."""
        return LINEAR if isinstance(self.booster, LinearBooster) else KIND

    @property
    def keys(self) -> dict[str, str | None]:
        """The extractor each input's classical block reads (None: the modality's own array)."""
        return {b.input: b.key for b in self.features.blocks if not b.embedding}

    @property
    def embeddings(self) -> dict[str, str]:
        """The frozen pretrained encoder whose embedding of an input a block reads (its
        frozen-outputs key), by input."""
        return {b.input: str(b.key) for b in self.features.blocks if b.embedding}

    @property
    def inputs(self) -> list[str]:
        """Every input a block reads, in the blocks' order."""
        return list(dict.fromkeys(b.input for b in self.features.blocks))

    def outputs(self, columns: dict[str, Any]) -> np.ndarray:
        """Outputs of the blocks' columns (by block id), as :meth:`predict` gives them."""
        return self.predict(self.features.matrix(columns))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Outputs of feature rows ``[N, F]``: log-probabilities ``[N, K]``, or predictions ``[N, 1]``."""
        pred = np.asarray(self.booster.predict(x, num_iteration=self.booster.best_iteration or None))
        if self.target == "regression":
            return pred.reshape(-1, 1).astype(np.float64)
        probs = np.stack([1.0 - pred, pred], axis=1) if self.num_classes == 2 else pred.reshape(x.shape[0], -1)
        return np.log(np.clip(probs, 1e-7, 1.0))

    def save(self, folder: Path, shared: Path | None = None) -> None:
        """Writes the member into ``folder`` (its SVD components in ``shared`` when given:
        :meth:`TreeFeatures.save`)."""
        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(self.booster, LinearBooster):
            self.booster.save(folder)
        else:
            self.booster.save_model(str(folder / "booster.txt"), num_iteration=self.booster.best_iteration or None)
        self.features.save(folder, shared)
        (folder / "trees.json").write_text(json.dumps({"target": self.target, "num_classes": self.num_classes,
                                                       "params": self.params}, default=str, indent=1))

    @classmethod
    def load(cls, folder: Path) -> "TreeModel":
        spec = json.loads((folder / "trees.json").read_text())
        if spec["params"].get("model") == LINEAR:
            booster = LinearBooster.load(folder, int(spec["num_classes"]))
        else:
            import lightgbm as lgb

            booster = lgb.Booster(model_file=str(folder / "booster.txt"))
        return cls(booster, TreeFeatures.load(folder), spec["target"], int(spec["num_classes"]), spec["params"])
