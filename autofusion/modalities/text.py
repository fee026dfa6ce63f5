"""Text: words and punctuation ids from a vocabulary built on the training split only, which
travels with the logged model (as JSON) so serving tokenises exactly like training.

Encoders that read text their own way (TF-IDF, a pretrained tokenizer) start from the raw
strings instead (see ``autofusion.models.extractors``).

A table often holds several text fields (a title, a description, a director, a cast list):
each is an input of its own, and where the space offers it (``encoders.text.layout``) a
trial may read them joined instead, as one text with each field's name before its value
(:func:`join_fields`). A column of short strings with too many distinct values to be
categories (names, cast lists, titles) is text too."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import Tensor

from autofusion.modalities.base import (
    DataChoice,
    Modality,
    ModalityInfo,
    PrepSettings,
    register_modality,
    round_up,
)

PAD, UNK = 0, 1
# Scripts written without spaces between words (Chinese, Japanese kana, Thai): each character
# is a token there, as a word is in scripts with spaces.
_UNSPACED = "\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(rf"[{_UNSPACED}]|[^\W{_UNSPACED}]+|[^\w\s]", re.UNICODE)
_TERM = re.compile(rf"[{_UNSPACED}]|[^\W{_UNSPACED}]+", re.UNICODE)  # words and characters, no punctuation
MAX_LENGTH_CAP = 256  # tokens, on the CPU
MAX_LENGTH_CAP_GPU = 512


class TextPrep(PrepSettings):
    """max_length: tokens kept per text (None: the 95th percentile of the training texts'
    lengths, capped); max_vocab, min_freq, lowercase: the word vocabulary; empty_is_text: an
    empty cell is an empty text (how a table's text fields read, as AutoGluon reads them), not
    a missing input or a bad row."""

    max_length: int | None = Field(None, ge=1, le=4096)
    max_vocab: int = Field(20000, ge=10)
    min_freq: int = Field(1, ge=1)
    lowercase: bool = True
    empty_is_text: bool = False


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Words and punctuation marks; each character of a script written without spaces."""
    return _WORD.findall(text.lower() if lowercase else text)


def as_text(cell: Any) -> str:
    """A manifest cell as text ('' for an empty one)."""
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return ""
    if _words(cell):  # a JSON list of words (tags): "red, blue"
        return ", ".join(str(v) for v in cell)
    try:
        import pandas as pd

        if cell is pd.NA:
            return ""
    except ImportError:  # pragma: no cover
        pass
    return str(cell)


def _words(cell: Any) -> bool:
    """A list of strings (tags, keywords), as JSON manifests (lists) and Parquet files (arrays)
    hold them."""
    return isinstance(cell, (list, tuple, np.ndarray)) and len(cell) > 0 and all(isinstance(v, str) for v in cell)


def join_fields(frame: pd.DataFrame) -> pd.Series:
    """Each row's text fields as one text, every non-empty field on a line of its own after
    its column's name (``Title: Inception``); an empty string where every field is empty."""
    names = [str(c) for c in frame.columns]
    rows = zip(*(frame[c].tolist() for c in frame.columns))
    return pd.Series(["\n".join(f"{n}: {t}" for n, t in zip(names, map(as_text, r)) if t.strip())
                      for r in rows], dtype=object)


# A column of short strings (no sentences) is text when it has too many distinct values to be
# categories (tabular.category_limit) and enough of them hold a separator (a name, a list):
# identifiers and codes are single tokens (tabular.SEPARATED_SHARE).
_FILE_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,5}$")


def free_text(vals: list[str]) -> bool:
    """Sentences: most values have three words or more (a character of Chinese or Japanese
    counts as a word), and they are mostly distinct."""
    multiword = sum(len(_TERM.findall(v)) >= 3 for v in vals) / len(vals)
    return multiword >= 0.5 and len(set(vals)) >= 0.5 * len(vals)


def short_text(vals: list[str]) -> bool:
    """Names, titles, cast or tag lists: too many distinct values to be categories, and at
    least ``SEPARATED_SHARE`` of them with a space or a comma in them (not one-token codes)."""
    from autofusion.modalities.tabular import SEPARATED_SHARE, category_limit, separated_share

    if sum(bool(_FILE_SUFFIX.search(v)) for v in vals) >= 0.5 * len(vals):
        return False  # file names of a kind no modality reads
    return len(set(vals)) > category_limit(len(vals)) and separated_share(vals) >= SEPARATED_SHARE


@dataclass(frozen=True)
class Vocab:
    """Token -> id; 0 is padding and 1 unknown."""

    tokens: tuple[str, ...]
    lowercase: bool = True

    @classmethod
    def build(cls, texts: Iterable[str], *, max_vocab: int, min_freq: int, lowercase: bool) -> "Vocab":
        counts: Counter[str] = Counter()
        for t in texts:
            counts.update(tokenize(t, lowercase))
        kept = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_freq]
        return cls(tokens=("<pad>", "<unk>", *kept[: max(0, max_vocab - 2)]), lowercase=lowercase)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, texts: Iterable[str], max_length: int) -> np.ndarray:
        """Texts -> int32 ``[N, max_length]`` ids, truncated and zero-padded."""
        index = {w: i for i, w in enumerate(self.tokens)}
        rows = []
        for t in texts:
            ids = [index.get(w, UNK) for w in tokenize(t, self.lowercase)][:max_length]
            rows.append(ids + [PAD] * (max_length - len(ids)))
        return np.asarray(rows, dtype=np.int32).reshape(-1, max_length)

    def to_json(self) -> dict:
        return {"tokens": list(self.tokens), "lowercase": self.lowercase}

    @classmethod
    def from_json(cls, data: dict) -> "Vocab":
        return cls(tokens=tuple(data["tokens"]), lowercase=bool(data["lowercase"]))


def length_choice(lengths: Sequence[int], *, cuda: bool, what: str, unit: str = "words") -> DataChoice:
    """The 95th percentile of ``lengths``, rounded up to a multiple of 8, capped."""
    cap = MAX_LENGTH_CAP_GPU if cuda else MAX_LENGTH_CAP
    if not len(lengths):
        return DataChoice(what, 32, "no training text; the default")
    p95 = float(np.percentile(lengths, 95))
    value = max(8, min(cap, round_up(max(p95, 1), 8)))
    capped = f", capped at {cap}" if value == cap and p95 > cap else ""
    return DataChoice(what, value, f"95th percentile of {len(lengths)} training texts: {p95:.0f} {unit}{capped}")


@register_modality
class TextModality(Modality):
    name = "text"
    Prep = TextPrep
    dtype = np.int32
    joinable = True  # several columns may be read as one joined text (encoders.text.layout: joined)

    def empty_is_value(self, prep: dict) -> bool:
        return bool(prep.get("empty_is_text"))

    def choose(self, prep: dict, sample: Sequence[Any], *, cuda: bool) -> tuple[dict, list[DataChoice]]:
        if prep.get("max_length") is not None:
            return dict(prep), []
        lengths = [len(tokenize(as_text(t), prep.get("lowercase", True))) for t in sample]
        c = length_choice(lengths, cuda=cuda, what="text.max_length")
        return {**prep, "max_length": c.value}, [c]

    def defaults(self, prep: dict) -> dict:
        return {**prep, "max_length": prep.get("max_length") or 32}

    def shape(self, prep: dict) -> tuple[int, ...]:
        return (prep["max_length"],)

    def fit(self, cells: Sequence[Any], prep: dict) -> dict:
        vocab = Vocab.build((as_text(c) for c in cells), max_vocab=prep["max_vocab"], min_freq=prep["min_freq"],
                            lowercase=prep["lowercase"])
        return {"vocab": vocab.to_json()}

    def encode(self, cells: Sequence[Any], prep: dict, state: dict) -> np.ndarray:
        return Vocab.from_json(state["vocab"]).encode((as_text(c) for c in cells), prep["max_length"])

    def info(self, prep: dict, state: dict) -> ModalityInfo:
        size = len(state["vocab"]["tokens"]) if state.get("vocab") else 2
        return ModalityInfo("text", vocab_size=size, max_length=prep["max_length"])

    def augment(self, x: Tensor) -> Tensor:
        """10% of the word ids replaced by <unk>."""
        drop = (torch.rand(x.shape, device=x.device) < 0.1) & (x != PAD)
        return torch.where(drop, torch.full_like(x, UNK), x)

    def recognises(self, values: Sequence[Any]) -> bool:
        """Strings that are not file paths, numbers or lists: free text (sentences), or short
        strings with too many distinct values to be categories (names, titles, cast lists); or
        a JSON manifest's lists of words (tags), each read as the words joined by commas."""
        cells = [v for v in values if as_text(v).strip()]  # None, NaN, pd.NA and blanks are empty cells
        vals = [as_text(v).strip() for v in cells if isinstance(v, str) or _words(v)]
        if not vals or len(vals) < 0.9 * len(cells):
            return False
        if sum(map(_words, cells)) >= 0.9 * len(cells):
            return True  # lists of words (tags, keywords): a bag of words, however few distinct
        if any(v.startswith("[") for v in vals[:50]) or _numeric_share(vals) >= 0.9 or _time_share(vals) >= 0.9:
            return False  # lists, numbers, dates and times (tabular reads the last two)
        return free_text(vals) or short_text(vals)

    def render_demo(self, bits: tuple[int, int], rng: np.random.Generator, path: Path) -> str | None:
        return render_text(*bits, rng)


def _time_share(vals: list[str]) -> float:
    """The share of strings that read as dates or times (``2021-03-04 10:00``)."""
    from autofusion.modalities.tabular import is_time

    return sum(map(is_time, vals)) / len(vals)


def _numeric_share(vals: list[str]) -> float:
    """The share of strings that read as numbers, as written in tables too (``$1,234.50``,
    ``15%``): a numeric column read as strings."""
    from autofusion.data.numbers import to_numbers

    sample = vals[:: max(1, len(vals) // 1000)]  # a share: a spread sample tells it
    return float(np.isfinite(to_numbers(pd.Series(sample, dtype=object))).mean())


# --- the demo ------------------------------------------------------------------------------

# 4 groups of 5 key words and 40 filler words (60 words in all).
WORD_GROUPS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("cat", "dog", "horse", "rabbit", "goat"), ("car", "train", "boat", "truck", "plane")),
    (("apple", "pear", "plum", "grape", "lemon"), ("hammer", "spoon", "brush", "ladder", "kettle")),
)
FILLER: tuple[str, ...] = (
    "the", "a", "an", "this", "that", "some", "near", "over", "under", "beside",
    "behind", "with", "and", "or", "then", "today", "later", "quietly", "slowly", "quickly",
    "big", "small", "old", "new", "seen", "found", "left", "kept", "moved", "placed",
    "there", "here", "again", "often", "very", "just", "still", "maybe", "also", "from",
)


def render_text(first: int, second: int, rng: np.random.Generator) -> str:
    """8-12 words: 2-3 words of one group per attribute among filler words, shuffled."""
    length = int(rng.integers(8, 13))
    words: list[str] = []
    for bit, groups in zip((first, second), WORD_GROUPS):
        words += rng.choice(groups[bit], size=int(rng.integers(2, 4))).tolist()
    words += rng.choice(FILLER, size=length - len(words)).tolist()
    return " ".join(words[i] for i in rng.permutation(len(words)))
