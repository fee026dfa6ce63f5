"""Every text encoder, by family:

* from scratch, over ``[B, L]`` token ids (0 = padding; the vocabulary is built on train):
  ``embedding_bag``, ``bigru``, ``transformer``;
* classical: ``tfidf``, TF-IDF of word and character n-grams fitted on the training split;
* pretrained (Hugging Face transformers, each with its own tokenizer): ``hf_text``, and the
  text tower of a CLIP or SigLIP model (``clip``; its vision tower is in ``image.py``).

What the classical and pretrained families share is in ``_classical.py`` and ``_pretrained.py``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from autofusion.components import Ge, Le, Rate, Size
from autofusion.modalities import ModalityInfo
from autofusion.modalities.text import as_text
from autofusion.models import weights
from autofusion.models.base import Encoder, Tokens, register_encoder
from autofusion.models.encoders._hf import (
    clip_tower,
    config_of,
    load_model,
    tower_width,
)
from autofusion.models.encoders._pretrained import ModelInputs, PretrainedEncoder
from autofusion.models.extractors import FeatureExtractor
from autofusion.models.masking import masked_mean

# --- from scratch -----------------------------------------------------------------------------


@register_encoder("embedding_bag", modality="text")
class EmbeddingBag(Encoder):
    """Mean of word embeddings: a strong, fast bag-of-words baseline."""

    def __init__(self, info: ModalityInfo, *, dim: Size = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(info.vocab_size, dim, padding_idx=0)
        self.out_dim = dim

    def tokens(self, x: Tensor) -> Tokens:
        return self.embed(x), x == 0


@register_encoder("bigru", modality="text")
class BiGRU(Encoder):
    """Bidirectional GRU over embeddings; tokens are its per-position outputs."""

    def __init__(
        self, info: ModalityInfo, *, dim: Size = 64, hidden: Size = 64, layers: Size = 1
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(info.vocab_size, dim, padding_idx=0)
        self.gru = nn.GRU(dim, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.out_dim = 2 * hidden

    def tokens(self, x: Tensor) -> Tokens:
        out, _ = self.gru(self.embed(x))
        return out, x == 0


@register_encoder("transformer", modality="text")
class TextTransformer(Encoder):
    """A small Transformer encoder with learned positions."""

    def __init__(
        self, info: ModalityInfo, *, dim: Size = 64, heads: Size = 4, layers: Size = 2,
        dropout: Rate = 0.1,
    ) -> None:
        super().__init__()
        if dim % heads:
            dim = heads * max(1, round(dim / heads))
        self.embed = nn.Embedding(info.vocab_size, dim, padding_idx=0)
        self.pos = nn.Parameter(torch.zeros(1, max(info.max_length, 1), dim))
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out_dim = dim

    def tokens(self, x: Tensor) -> Tokens:
        pad = x == 0
        h = self.embed(x) + self.pos[:, : x.shape[1]]
        # An all-padding row (empty text) would make attention NaN: let it see position 0.
        safe_pad = pad.clone()
        safe_pad[:, 0] = False
        return self.encoder(h, src_key_padding_mask=safe_pad), safe_pad


# --- classical --------------------------------------------------------------------------------


class TfidfExtractor(FeatureExtractor):
    """scikit-learn TF-IDF (sublinear term frequency, L2-normalised rows) of word 1..n-grams
    and, unless ``char_ngrams`` is 0, of character 2..n-grams within word boundaries."""

    def fit(self, cells: pd.Series) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = [str(t) for t in cells]
        self.vectorizers = [TfidfVectorizer(**kw) for kw in self._settings()]
        for v in self.vectorizers:
            try:
                v.fit(texts)
            except ValueError:  # an empty vocabulary (no text, or min_df too high): keep one dummy feature
                v.set_params(min_df=1, token_pattern=r"(?u)\b\w+\b")
                v.fit([*texts, "empty"])

    def _settings(self) -> list[dict[str, Any]]:
        """The TfidfVectorizer arguments of the word (and character) vectorizer."""
        p = self.params
        common = {"sublinear_tf": True, "min_df": p["min_df"], "max_features": p["max_features"],
                  "strip_accents": "unicode", "dtype": np.float32}
        out = [{"ngram_range": (1, p["word_ngrams"]), **common}]
        if p["char_ngrams"] >= 2:
            out.append({"analyzer": "char_wb", "ngram_range": (2, p["char_ngrams"]), **common})
        return out

    def save_state(self, folder: Path) -> None:
        for i, v in enumerate(self.vectorizers):
            (folder / f"vocabulary-{i}.json").write_text(json.dumps({k: int(j) for k, j in v.vocabulary_.items()}))
            np.save(folder / f"idf-{i}.npy", v.idf_)

    def load_state(self, folder: Path) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizers = []
        for i, kw in enumerate(self._settings()):
            v = TfidfVectorizer(**kw)
            v.vocabulary_ = json.loads((folder / f"vocabulary-{i}.json").read_text())
            v.idf_ = np.load(folder / f"idf-{i}.npy")
            self.vectorizers.append(v)

    def transform(self, cells: pd.Series) -> dict[str, Any]:
        import scipy.sparse as sp

        texts = ["" if t is None else str(t) for t in cells]
        return {"x": sp.hstack([v.transform(texts) for v in self.vectorizers], format="csr", dtype=np.float32)}

    def info(self, base: ModalityInfo) -> dict:
        return {"features": int(sum(len(v.vocabulary_) for v in self.vectorizers))}


@register_encoder("tfidf", modality="text")
class Tfidf(Encoder):
    """TF-IDF of word and character n-grams (fitted on the training split) into a linear projection.

    Args:
        word_ngrams: word n-grams from 1 to this.
        char_ngrams: character n-grams from 2 to this; 0 leaves them out.
        max_features: the most frequent n-grams kept, per kind.
        min_df: n-grams seen in fewer training texts are dropped.
        dim: width of the projection.
        dropout: dropout on the TF-IDF features while training.
    """

    extractor: ClassVar[type[FeatureExtractor]] = TfidfExtractor
    feature_params: ClassVar[tuple[str, ...]] = ("word_ngrams", "char_ngrams", "max_features", "min_df")

    def __init__(
        self, info: ModalityInfo, *, word_ngrams: Annotated[int, Ge(1), Le(3)] = 2,
        char_ngrams: Annotated[int, Ge(0), Le(6)] = 5, max_features: Annotated[int, Ge(10)] = 20000,
        min_df: Size = 1, dim: Size = 128, dropout: Rate = 0.2,
    ) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(int(info.extra["features"]), dim)
        self.out_dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.drop(x.float()))

    def tokens(self, x: Tensor) -> Tokens:
        return self.forward(x).unsqueeze(1), None


# --- pretrained -------------------------------------------------------------------------------


class TextInputs(ModelInputs):
    """Token ids and attention mask from the model's own tokenizer (truncated at ``max_length``,
    at most the model's positions; padded to the longest text)."""

    tower: ClassVar[str] = ""  # "text" for CLIP-style configs: the text tower's settings
    state_keys = ("dim", "config", "max_length", "pad_to_max")

    def lookup(self) -> weights.Weights:
        return weights.hf_model(self.params["model"])

    def setup(self) -> None:
        from transformers import AutoTokenizer

        cfg = config_of(self.weights.path)
        self.config = cfg.to_dict()
        self.tokenizer = AutoTokenizer.from_pretrained(self.weights.path)
        text_cfg = getattr(cfg, f"{self.tower}_config") if self.tower else cfg
        limits = [self.params["max_length"], getattr(text_cfg, "max_position_embeddings", None) or 10**6,
                  getattr(self.tokenizer, "model_max_length", None) or 10**6]
        self.max_length = int(min(limits))
        self.pad_to_max = str(cfg.model_type).startswith("siglip")  # SigLIP was trained on padded texts
        self.dim = self.model_dim(cfg)

    def model_dim(self, cfg: Any) -> int:
        return int(cfg.hidden_size)

    def preprocessing(self) -> dict:
        return {"tokenizer": type(self.tokenizer).__name__, "max_length": self.max_length,
                "padding": "max_length" if self.pad_to_max else "longest"}

    def build_info(self) -> dict:
        return {"config": self.config}

    def save_state(self, folder: Path) -> None:
        super().save_state(folder)
        self.tokenizer.save_pretrained(folder / "tokenizer")

    def load_state(self, folder: Path) -> None:
        from transformers import AutoTokenizer

        super().load_state(folder)
        self.tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")

    def transform(self, cells: Any) -> dict[str, Any]:
        texts = [as_text(c) for c in cells]
        enc = self.tokenizer(texts, padding="max_length" if self.pad_to_max else "longest", truncation=True,
                             max_length=self.max_length, return_tensors="np")
        mask = enc.get("attention_mask")
        ids = enc["input_ids"].astype(np.int32)
        return {"input_ids": ids, "attention_mask": (np.ones_like(ids) if mask is None else mask).astype(np.int8)}

    def fixed(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Padded (on the right, masked out) to ``max_length`` tokens: a chunk of short texts is
        padded to its own longest otherwise."""
        extra = self.max_length - arrays["input_ids"].shape[1]
        if extra <= 0:
            return arrays
        pad_id = self.tokenizer.pad_token_id or 0
        return {"input_ids": np.pad(arrays["input_ids"], ((0, 0), (0, extra)), constant_values=pad_id),
                "attention_mask": np.pad(arrays["attention_mask"], ((0, 0), (0, extra)))}


def trimmed(x: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Token ids and attention mask without the columns no text of the batch reaches (cached
    model inputs are padded to ``max_length``)."""
    mask = x["attention_mask"].long()
    cut = max(int(mask.sum(dim=1).max()), 1) if mask.numel() else mask.shape[1]
    return x["input_ids"][:, :cut].long(), mask[:, :cut]


@register_encoder("hf_text", modality="text")
class HFText(PretrainedEncoder):
    """A pretrained transformers text encoder (BERT, DistilBERT, MiniLM, E5, ...) with its own tokenizer; `model` is a hub name or a local folder (required).

    Args:
        model: a hub repository in the Hugging Face cache, or a local folder.
        pooling: the pooled vector: ``mean`` of the tokens, or the first (``cls``) token.
        max_length: tokens the tokenizer keeps per text (at most the model's positions).
        max_tokens: tokens kept for token-level fusion (early, attention, film).
    """

    extractor = TextInputs
    feature_params = ("model", "max_length", "max_tokens")

    def __init__(self, info: ModalityInfo, *, model: str, pooling: Literal["mean", "cls"] = "mean",
                 max_length: Annotated[int, Ge(8), Le(4096)] = 128, max_tokens: Size = 32) -> None:
        self.pooling = pooling
        super().__init__(info, max_tokens)

    def build_backbone(self, extra: dict, load: bool) -> nn.Module:
        return load_model(extra, load)

    def encode(self, x: Any) -> tuple[dict[str, Tensor], Tensor, Tensor | None]:
        ids, mask = trimmed(x)
        h = self.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        return {"pooled": masked_mean(h, mask == 0), "cls": h[:, 0]}, h, mask == 0

    def pick(self, out: dict[str, Tensor]) -> Tensor:
        return out["cls"] if self.pooling == "cls" else out["pooled"]


class ClipTextInputs(TextInputs):
    tower = "text"

    def model_dim(self, cfg: Any) -> int:
        return tower_width(cfg, "text")


@register_encoder("clip", modality="text")
class ClipText(PretrainedEncoder):
    """The text tower of a CLIP or SigLIP model (pooled: its projected text embedding); `model` is a hub name or a local folder (required).

    Args:
        model: a hub repository in the Hugging Face cache, or a local folder.
        max_length: tokens the tokenizer keeps per text (at most the model's positions).
        max_tokens: tokens kept for token-level fusion.
    """

    extractor = ClipTextInputs
    feature_params = ("model", "max_length", "max_tokens")

    def __init__(self, info: ModalityInfo, *, model: str, max_length: Annotated[int, Ge(8), Le(4096)] = 77,
                 max_tokens: Size = 32) -> None:
        super().__init__(info, max_tokens)
        self.padded = (info.extra.get("preprocessing") or {}).get("padding") == "max_length"  # SigLIP: as trained

    def build_backbone(self, extra: dict, load: bool) -> nn.Module:
        return clip_tower(extra, load, "text")

    def encode(self, x: Any) -> tuple[dict[str, Tensor], Tensor, Tensor | None]:
        ids, mask = (x["input_ids"].long(), x["attention_mask"].long()) if self.padded else trimmed(x)
        out = self.backbone["tower"](input_ids=ids, attention_mask=mask)
        proj = self.backbone["proj"]
        return {"pooled": proj(out.pooler_output)}, proj(out.last_hidden_state), mask == 0
