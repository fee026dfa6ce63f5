"""What every pretrained encoder shares (``hf_text`` and ``clip`` in ``text.py``, ``timm`` and
``clip`` in ``image.py``, ``hf_audio`` in ``audio.py``; their models are loaded by ``_hf.py`` and
``_timm.py``): its model-input extractor, its frozen outputs computed once, token capping, and
the blocks that staged training unfreezes.

A pretrained encoder reads one of two kinds of arrays (``models.extractors.pretrained_layout``):

* its **model inputs**, from its :class:`ModelInputs` extractor (token ids and attention mask
  from its own tokenizer, uint8 pixels at its own size, waveforms at its own rate through its
  own feature extractor), when it is fine-tuned or logged and served whole;
* its **frozen outputs** (``pooled`` ``[N, D]``, ``tokens`` ``[N, T, D]`` capped at
  ``max_tokens``, a ``pad`` mask where tokens are padding), computed once per dataset by
  ``_embed.embed`` and cached on disk as float16 (``autofusion.search.features``), when it is frozen: it
  then holds no backbone at all, and a trial trains fusion and head only.

The preprocessing comes from the model's own files and is saved with the fitted extractor
inside the logged model; the backbone's architecture (its config) travels in the model's
metadata, and its weights in the logged state dict, so serving needs no hub.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch.nn.functional as F
from torch import Tensor, nn

from autofusion.errors import ConfigError
from autofusion.modalities import DecodeError, ModalityInfo
from autofusion.modalities.base import eight_bit, heif, open_source, upright
from autofusion.models.base import Encoder, Tokens
from autofusion.models.encoders._embed import embed, embed_batch_size
from autofusion.models.extractors import FeatureExtractor
from autofusion.models.weights import Weights

FROZEN_OUTPUTS_VERSION = 3  # part of every feature-cache key: raise it when embed() changes (2: tokens padded
# to max_tokens; 3: photos turned upright by their EXIF orientation)


class ModelInputs(FeatureExtractor):
    """Base of a pretrained encoder's extractor: raw cells -> the model's own inputs.

    ``fit`` finds the weights (never downloading) and reads the preprocessing from the
    model's files; nothing is learned from the rows. Subclasses implement ``lookup``,
    ``setup``, ``transform`` and ``preprocessing``.
    """

    weights: Weights
    #: what ``setup`` decided, saved with the logged model as JSON (tokenizers and feature
    #: extractors are saved with their own ``save_pretrained``, never pickled)
    state_keys: ClassVar[tuple[str, ...]] = ("dim",)

    def fit(self, cells: Any) -> None:
        self.weights = self.lookup()
        self.setup()

    def save_state(self, folder: Path) -> None:
        state = {k: getattr(self, k) for k in self.state_keys}
        (folder / "state.json").write_text(json.dumps({**state, "weights": asdict(self.weights)}))

    def load_state(self, folder: Path) -> None:
        state = json.loads((folder / "state.json").read_text())
        self.weights = Weights(**state.pop("weights"))
        for k, v in state.items():
            setattr(self, k, v)

    def lookup(self) -> Weights:  # pragma: no cover - abstract
        raise NotImplementedError

    def setup(self) -> None:  # pragma: no cover - abstract
        """Reads the tokenizer, image size and normalisation or sample rate; sets ``self.dim``."""
        raise NotImplementedError

    def preprocessing(self) -> dict:
        """What the model's files decided (JSON): logged with the search and saved in the model."""
        return {}

    def fixed(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``transform``'s arrays at one shape whatever the cells, as the feature cache's chunks need."""
        return arrays

    def build_info(self) -> dict:
        """What the encoder needs to build its backbone without the weights (JSON)."""
        return {}

    def info(self, base: ModalityInfo) -> dict:
        return {"dim": int(self.dim), "source": self.weights.path, "arch": self.weights.arch,
                "weights": self.weights.identity, "preprocessing": self.preprocessing(), **self.build_info()}

    def identity(self) -> dict:
        return {**super().identity(), "weights": self.weights.identity, "preprocessing": self.preprocessing()}


class PixelInputs(ModelInputs):
    """uint8 RGB pixels ``[N, 3, size, size]`` at the model's input size: the shorter side
    resized to ``size / crop_pct``, then the centre cropped (timm's and CLIP's evaluation
    transform); the model normalises them with its own mean and std."""

    state_keys = ("dim", "size", "crop_pct", "interpolation", "mean", "std")

    def set_pixels(self, size: int, mean: Sequence[float], std: Sequence[float], crop_pct: float = 1.0,
                   interpolation: str = "bicubic") -> None:
        self.size, self.crop_pct, self.interpolation = int(size), float(crop_pct or 1.0), str(interpolation)
        self.mean, self.std = [float(v) for v in mean], [float(v) for v in std]

    def preprocessing(self) -> dict:
        return {"size": self.size, "crop_pct": self.crop_pct, "interpolation": self.interpolation,
                "mean": self.mean, "std": self.std}

    def transform(self, cells: Any) -> dict[str, Any]:
        empty = np.zeros((3, self.size, self.size), np.uint8)
        return {"x": decode_cells(list(cells), lambda c: decode_crop(c, self.size, self.crop_pct,
                                                                     self.interpolation), empty)}


def decode_crop(source: Any, size: int, crop_pct: float = 1.0, interpolation: str = "bicubic") -> np.ndarray:
    """An image (path or bytes) -> uint8 ``[3, size, size]``: shorter side to ``size / crop_pct``, centre crop."""
    from PIL import Image, UnidentifiedImageError

    resample = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}.get(
        interpolation, Image.Resampling.BICUBIC)
    heif()
    try:
        with Image.open(open_source(source)) as im:
            im = eight_bit(upright(im)).convert("RGB")
            scale = size / crop_pct / min(im.size)
            w, h = max(size, round(im.size[0] * scale)), max(size, round(im.size[1] * scale))
            im = im.resize((w, h), resample)
            left, top = (w - size) // 2, (h - size) // 2
            arr = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)
    except DecodeError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DecodeError(f"not a readable image ({type(exc).__name__})") from None
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


class FrozenOutputs(FeatureExtractor):
    """A frozen pretrained encoder's outputs: its model inputs through its backbone, once.

    Args:
        modality, prep, params: as for every extractor (``params``: the encoder's feature parameters).
        encoder_cls: the pretrained encoder class.
        inputs: its fitted :class:`ModelInputs`.
        info: the ModalityInfo the encoder builds from (with ``inputs.info`` in ``extra``).
    """

    outputs = ("pooled", "tokens", "pad")

    def __init__(self, modality: str, prep: dict, params: dict, *, encoder_cls: type, inputs: ModelInputs,
                 info: ModalityInfo) -> None:
        super().__init__(modality, prep, params)
        self.encoder_cls, self.inputs, self.base_info = encoder_cls, inputs, info

    def transform(self, cells: Any) -> dict[str, Any]:
        return self.embed(self.inputs.transform(cells))

    def embed(self, arrays: dict[str, np.ndarray], progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """The outputs of model-input ``arrays`` (the backbone is loaded here and dropped after)."""
        return self.embedder()(arrays, progress)

    def embedder(self) -> Callable[..., dict[str, np.ndarray]]:
        """A function ``(model-input arrays, progress=None) -> outputs`` for calls chunk after
        chunk: it loads the backbone on its first call (never, on a cache hit) and keeps it, with
        the batch size the device's memory allows, until it is dropped."""
        held: dict[str, Any] = {}

        def run(arrays: dict[str, np.ndarray], progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
            if "encoder" not in held:
                held["encoder"] = self.encoder_cls(self.base_info, **self.params)
                held["batch"] = embed_batch_size(held["encoder"], arrays)
            return embed(held["encoder"], arrays, batch_size=held["batch"], progress=progress)

        return run

    def identity(self) -> dict:
        return {"frozen": FROZEN_OUTPUTS_VERSION, "encoder": self.encoder_cls.__name__, **self.inputs.identity()}


class PretrainedEncoder(Encoder):
    """Base of the pretrained families. A subclass builds its backbone (``build_backbone``)
    and runs it on its model inputs (``encode``); this class caps tokens, reads cached frozen
    outputs instead when given them, and keeps frozen parts of the backbone in eval mode.

    ``info.extra`` holds its extractor's facts (``dim``, ``source``, ``arch``, ...) and, from
    ``build_model``, ``backbone`` (False: a light module over cached outputs) and
    ``load_weights`` (False: the backbone is built from its config; a state dict follows).
    """

    pretrained: ClassVar[bool] = True
    token_cap: ClassVar[str] = "truncate"  # "pool": neighbouring tokens averaged down to max_tokens
    backbone: nn.Module | None

    def __init__(self, info: ModalityInfo, max_tokens: int) -> None:
        super().__init__()
        extra = info.extra
        if "dim" not in extra:
            raise ConfigError(f"{type(self).__name__}: its features were not prepared (autofusion.search.features)")
        self.out_dim = int(extra["dim"])
        self.max_tokens = int(max_tokens)
        self.backbone = None
        if extra.get("backbone", True):
            self.backbone = self.build_backbone(extra, load=bool(extra.get("load_weights", True)))

    @classmethod
    def check_params(cls, params: dict) -> str | None:
        """Why a space's parameters of this encoder cannot work (None when they can)."""
        if not params.get("model"):
            return "model: missing key; give a hub name or a local folder"
        return None

    def build_backbone(self, extra: dict, load: bool) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, x: Any) -> tuple[dict[str, Tensor], Tensor, Tensor | None]:  # pragma: no cover - abstract
        """Model inputs -> (pooled vectors by name, tokens ``[B, T, D]``, pad mask ``[B, T]`` or None)."""
        raise NotImplementedError

    def blocks(self) -> list[list[nn.Parameter]]:
        """The backbone's parameters in blocks, input side first (the embeddings, then each
        layer; what follows the last layer belongs to it): staged training unfreezes the last N."""
        return block_params(self.backbone)

    def outputs(self, x: Any) -> dict[str, Tensor]:
        """What the feature cache stores: pooled vector(s), capped tokens and their pad mask."""
        pooled, toks, pad = self.encode(x)
        toks, pad = cap_tokens(toks, pad, self.max_tokens, self.token_cap)
        out = {**pooled, "tokens": toks}
        if pad is not None:
            out["pad"] = pad
        return out

    def pick(self, out: dict[str, Tensor]) -> Tensor:
        """The pooled vector this encoder gives (``hf_text`` chooses cls or mean)."""
        return out["pooled"]

    def _outputs(self, x: Any) -> dict[str, Tensor]:
        if isinstance(x, dict) and "tokens" in x:  # cached frozen outputs
            return x
        if self.backbone is None:
            raise RuntimeError(f"{type(self).__name__} was built without its backbone but got model inputs")
        return self.outputs(x)

    def forward(self, x: Any) -> Tensor:
        return self.pick(self._outputs(x)).float()

    def tokens(self, x: Any) -> Tokens:
        out = self._outputs(x)
        pad = out.get("pad")
        return out["tokens"].float(), (pad.bool() if pad is not None else None)

    def train(self, mode: bool = True) -> "PretrainedEncoder":
        """Frozen parts of the backbone stay in eval mode (batch-norm statistics, dropout)."""
        super().train(mode)
        if mode and self.backbone is not None:
            if not any(p.requires_grad for p in self.backbone.parameters()):
                self.backbone.eval()
            else:
                for m in self.backbone.modules():
                    own = list(m.parameters(recurse=False))
                    if own and not any(p.requires_grad for p in own):
                        m.eval()
        return self


def cap_tokens(toks: Tensor, pad: Tensor | None, n: int, how: str) -> tuple[Tensor, Tensor | None]:
    """At most ``n`` tokens: the first ``n`` (``truncate``, text) or averages of neighbours (``pool``);
    fewer with a pad mask (texts padded to their batch's longest) padded to ``n``: one shape per cache."""
    if toks.shape[1] < n and pad is not None and how == "truncate":
        extra = n - toks.shape[1]
        return F.pad(toks, (0, 0, 0, extra)), F.pad(pad, (0, extra), value=True)
    if toks.shape[1] <= n:
        return toks, pad
    if how == "truncate":
        return toks[:, :n], None if pad is None else pad[:, :n]
    pooled = F.adaptive_avg_pool1d(toks.transpose(1, 2).float(), n).transpose(1, 2)
    return pooled.to(toks.dtype), None


def grid_tokens(fmap: Tensor, n: int) -> Tensor:
    """A feature map ``[B, C, h, w]`` as at most ``n`` tokens: averaged down to a square grid."""
    side = max(1, math.isqrt(n))
    if fmap.shape[-2] * fmap.shape[-1] > n:
        fmap = F.adaptive_avg_pool2d(fmap, (min(side, fmap.shape[-2]), min(side, fmap.shape[-1])))
    return fmap.flatten(2).transpose(1, 2)


def layer_stack(module: nn.Module) -> nn.ModuleList | None:
    """The module's stack of layers: its longest ``ModuleList`` (the later one on a tie)."""
    best: nn.ModuleList | None = None
    for m in module.modules():
        if isinstance(m, nn.ModuleList) and len(m) > 1 and (best is None or len(m) >= len(best)):
            best = m
    return best


def block_params(backbone: nn.Module | None) -> list[list[nn.Parameter]]:
    """Parameters in blocks: those before the layer stack, then one block per layer; those
    after the last layer (final norm, pooler, projection) join it."""
    if backbone is None:
        return []
    stack = layer_stack(backbone)
    params = list(backbone.parameters())
    if stack is None:
        return [params]
    where = {id(p): i + 1 for i, layer in enumerate(stack) for p in layer.parameters()}
    blocks: list[list[nn.Parameter]] = [[] for _ in range(len(stack) + 1)]
    current = 0
    for p in params:
        current = where.get(id(p), current)  # 0 before the first layer; the last layer's after it
        blocks[current].append(p)
    return [b for b in blocks if b]


def top_blocks(encoder: PretrainedEncoder, n: int) -> list[nn.Parameter]:
    """The parameters of the encoder's last ``n`` blocks (every parameter for ``n`` = 0)."""
    blocks = encoder.blocks()
    chosen = blocks if n <= 0 or n >= len(blocks) else blocks[-n:]
    return [p for b in chosen for p in b]


def decode_cells(cells: Sequence[Any], decode: Callable[[Any], np.ndarray], empty: np.ndarray) -> np.ndarray:
    """Every cell (a path, file bytes, or None where missing) decoded, in threads; a bad cell
    raises ValueError naming its row (training rows were checked by the data stage already)."""

    def one(i: int) -> np.ndarray:
        cell = cells[i]
        if cell is None or (isinstance(cell, float) and np.isnan(cell)):
            return empty
        try:
            return decode(cell)
        except DecodeError as exc:
            raise ValueError(f"row {i + 1}: {exc}") from None

    with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
        out = list(pool.map(one, range(len(cells))))
    return np.stack(out) if out else empty[None][:0]
