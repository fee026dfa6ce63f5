"""A word-level tokenizer whose vocabulary is built from the training split only and
travels with the logged model (as JSON), so serving tokenises exactly like training."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import numpy as np

PAD, UNK = 0, 1
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


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


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Words and punctuation marks."""
    return _WORD.findall(text.lower() if lowercase else text)
