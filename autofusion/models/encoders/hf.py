"""Hugging Face transformers encoders: ``hf_text`` (BERT, DistilBERT, MiniLM, E5, ... with
their own tokenizer), ``hf_audio`` (wav2vec2, HuBERT, AST, ... with their own feature
extractor) and ``clip`` (the image and text towers of a CLIP or SigLIP model, one per
modality: pick ``clip`` for both to use the pair). Each names a model: a hub repository in
the Hugging Face cache, or a local folder saved with ``save_pretrained``. See
``pretrained.py`` for what they share (frozen outputs, caching, staged unfreezing)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn

from autofusion.components import Ge, Le, Size
from autofusion.modalities import ModalityInfo
from autofusion.modalities.audio import decode_audio, num_samples
from autofusion.modalities.base import Normalize
from autofusion.modalities.text import as_text
from autofusion.models import weights
from autofusion.models.base import register_encoder
from autofusion.models.masking import masked_mean
from autofusion.models.encoders.pretrained import (
    ModelInputs,
    PixelInputs,
    PretrainedEncoder,
    decode_cells,
    grid_tokens,
)


def config_of(path: str) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path)


def config_from(d: dict) -> Any:
    """A transformers config from its ``to_dict()`` (how the logged model rebuilds a backbone)."""
    from transformers import AutoConfig

    rest = {k: v for k, v in d.items() if k != "model_type"}
    return AutoConfig.for_model(d["model_type"], **rest)


def load_model(extra: dict, load: bool) -> nn.Module:
    """The transformers model: its pretrained weights from the local folder, or (``load``
    False, a state dict follows) only its architecture from the config saved in ``extra``."""
    from transformers import AutoModel

    if load:
        return AutoModel.from_pretrained(extra["source"], dtype=torch.float32)
    return AutoModel.from_config(config_from(extra["config"]), dtype=torch.float32)  # not the config's fp16


# --- text ---------------------------------------------------------------------------------------


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
        mask = x["attention_mask"].long()
        h = self.backbone(input_ids=x["input_ids"].long(), attention_mask=mask).last_hidden_state
        return {"pooled": masked_mean(h, mask == 0), "cls": h[:, 0]}, h, mask == 0

    def pick(self, out: dict[str, Tensor]) -> Tensor:
        return out["cls"] if self.pooling == "cls" else out["pooled"]


# --- CLIP / SigLIP towers -------------------------------------------------------------------------


def _projection(cfg: Any, tower: str) -> int:
    """The width of a tower's outputs: its projection's (CLIP) or its hidden size (SigLIP)."""
    from transformers import AutoModel

    with torch.device("meta"):  # the architecture only: no memory, no weights
        model = AutoModel.from_config(cfg)
    proj = getattr(model, f"{'visual' if tower == 'vision' else 'text'}_projection", None)
    return int(proj.out_features) if isinstance(proj, nn.Linear) else int(getattr(cfg, f"{tower}_config").hidden_size)


def _tower(extra: dict, load: bool, tower: str) -> nn.Module:
    model = load_model(extra, load)
    proj = getattr(model, f"{'visual' if tower == 'vision' else 'text'}_projection", None)
    parts = {"tower": getattr(model, f"{tower}_model"), "proj": proj if isinstance(proj, nn.Module) else nn.Identity()}
    if tower == "vision":
        parts["norm"] = Normalize(extra["preprocessing"]["mean"], extra["preprocessing"]["std"])
    return nn.ModuleDict(parts)


class ClipTextInputs(TextInputs):
    tower = "text"

    def model_dim(self, cfg: Any) -> int:
        return _projection(cfg, "text")


class ClipImageInputs(PixelInputs):
    """uint8 pixels at the vision tower's size, normalised (by the model) with its processor's
    mean and std."""

    state_keys = (*PixelInputs.state_keys, "config")

    def lookup(self) -> weights.Weights:
        return weights.hf_model(self.params["model"])

    def setup(self) -> None:
        cfg = config_of(self.weights.path)
        self.config = cfg.to_dict()
        mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)  # CLIP's
        try:
            from transformers import AutoImageProcessor

            proc = AutoImageProcessor.from_pretrained(self.weights.path)
            mean, std = tuple(proc.image_mean), tuple(proc.image_std)
        except (OSError, ValueError, TypeError, AttributeError):
            pass  # no processor saved: CLIP's statistics
        self.set_pixels(int(cfg.vision_config.image_size), mean, std, crop_pct=1.0)
        self.dim = _projection(cfg, "vision")

    def build_info(self) -> dict:
        return {"config": self.config}


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

    def build_backbone(self, extra: dict, load: bool) -> nn.Module:
        return _tower(extra, load, "text")

    def encode(self, x: Any) -> tuple[dict[str, Tensor], Tensor, Tensor | None]:
        mask = x["attention_mask"].long()
        out = self.backbone["tower"](input_ids=x["input_ids"].long(), attention_mask=mask)
        proj = self.backbone["proj"]
        return {"pooled": proj(out.pooler_output)}, proj(out.last_hidden_state), mask == 0


@register_encoder("clip", modality="image")
class ClipImage(PretrainedEncoder):
    """The vision tower of a CLIP or SigLIP model (pooled: its projected image embedding; tokens: its patch tokens, averaged down to `max_tokens`); `model` is a hub name or a local folder (required).

    Args:
        model: a hub repository in the Hugging Face cache, or a local folder.
        max_tokens: tokens kept for token-level fusion.
    """

    extractor = ClipImageInputs
    feature_params = ("model", "max_tokens")
    token_cap = "pool"

    def __init__(self, info: ModalityInfo, *, model: str, max_tokens: Size = 16) -> None:
        super().__init__(info, max_tokens)

    def build_backbone(self, extra: dict, load: bool) -> nn.Module:
        self.model_type = str(extra["config"].get("model_type", ""))
        return _tower(extra, load, "vision")

    def encode(self, x: Any) -> tuple[dict[str, Tensor], Tensor, Tensor | None]:
        b = self.backbone
        out = b["tower"](pixel_values=b["norm"](x))
        toks = out.last_hidden_state
        if self.model_type == "clip":  # CLIP normalises only its pooled token; its tokens get the same norm here
            toks = b["tower"].post_layernorm(toks)
        return {"pooled": b["proj"](out.pooler_output)}, b["proj"](toks), None


# --- audio -------------------------------------------------------------------------------------


class AudioInputs(ModelInputs):
    """Waveforms decoded at the model's sample rate (the modality's ``seconds``), through the
    model's own feature extractor (normalised waveforms, or AST's filter banks)."""

    state_keys = ("dim", "config", "sample_rate", "num_samples")

    def lookup(self) -> weights.Weights:
        return weights.hf_model(self.params["model"])

    def setup(self) -> None:
        from transformers import AutoFeatureExtractor

        cfg = config_of(self.weights.path)
        self.config = cfg.to_dict()
        self.processor = AutoFeatureExtractor.from_pretrained(self.weights.path)
        self.sample_rate = int(self.processor.sampling_rate)
        self.num_samples = num_samples({"sample_rate": self.sample_rate, "seconds": self.prep["seconds"]})
        self.dim = int(cfg.hidden_size)

    def preprocessing(self) -> dict:
        return {"feature_extractor": type(self.processor).__name__, "sample_rate": self.sample_rate,
                "num_samples": self.num_samples}

    def build_info(self) -> dict:
        return {"config": self.config}

    def save_state(self, folder: Path) -> None:
        super().save_state(folder)
        self.processor.save_pretrained(folder / "processor")

    def load_state(self, folder: Path) -> None:
        from transformers import AutoFeatureExtractor

        super().load_state(folder)
        self.processor = AutoFeatureExtractor.from_pretrained(folder / "processor")

    def transform(self, cells: Any) -> dict[str, Any]:
        waves = decode_cells(list(cells), lambda c: decode_audio(c, self.sample_rate, self.num_samples),
                             np.zeros(self.num_samples, np.float32))
        out = self.processor(list(waves), sampling_rate=self.sample_rate, return_tensors="np")
        arrays = {"input_values": np.asarray(out["input_values"], dtype=np.float32)}
        if "attention_mask" in out:
            arrays["attention_mask"] = np.asarray(out["attention_mask"], dtype=np.int8)
        return arrays


@register_encoder("hf_audio", modality="audio")
class HFAudio(PretrainedEncoder):
    """A pretrained transformers audio encoder (wav2vec2, HuBERT, AST, ...) with its own feature extractor and sample rate; `model` is a hub name or a local folder (required).

    Args:
        model: a hub repository in the Hugging Face cache, or a local folder.
        max_tokens: frames kept for token-level fusion (averaged down to this many).
    """

    extractor = AudioInputs
    feature_params = ("model", "max_tokens")
    token_cap = "pool"

    def __init__(self, info: ModalityInfo, *, model: str, max_tokens: Size = 16) -> None:
        super().__init__(info, max_tokens)

    def build_backbone(self, extra: dict, load: bool) -> nn.Module:
        return load_model(extra, load)

    def encode(self, x: Any) -> tuple[dict[str, Tensor], Tensor, Tensor | None]:
        kw = {"input_values": x["input_values"].float()}
        if "attention_mask" in x:
            kw["attention_mask"] = x["attention_mask"].long()
        h = self.backbone(**kw).last_hidden_state
        if h.ndim == 4:  # a model whose output is a feature map
            h = grid_tokens(h, self.max_tokens)
        return {"pooled": h.mean(dim=1)}, h, None
