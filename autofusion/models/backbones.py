"""The recommended pretrained backbones, in one place: per use (a modality, or the image+text
pair) and per device, the weights a search starts from when they are on this machine.

A built-in space and a space assembled from ``--data`` add, for each of their modalities, the
recommended encoder whose weights are found locally (``autofusion weights`` shelf, or the
libraries' caches) as a choice beside the classical and from-scratch ones, and that encoder
together with the modality's classical one (``tfidf+hf_text``) as another
(``autofusion.spaces.pretrained``). ``autofusion weights pull --recommended`` fetches a
device's set where a network exists. CPU picks are small (seconds per frozen forward pass
over a few thousand rows on two cores); GPU picks are larger, and there the search also
chooses between frozen, staged and fine-tuned training. Names are the hub's and timm's own.

A leaf: it imports nothing heavy (torch only inside :func:`device`, when no setting says).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

DEVICES = ("cpu", "gpu")
USES = ("text", "image", "audio", "image+text", "video")


@dataclass(frozen=True)
class Backbone:
    """One recommended backbone.

    Attributes:
        use: what it encodes: a modality, or ``image+text`` (a CLIP-style pair, one tower each).
        device: ``cpu`` or ``gpu``.
        weights: its name as ``autofusion weights pull`` and ``weights add`` take it: a Hugging
            Face hub repository, ``timm:NAME`` or ``torchvision:NAME``.
        encoder: the encoder that reads it (``hf_text``, ``timm``, ``clip``, ``hf_audio``, ``r3d_18``).
        params: the encoder choice's parameters besides the weights' name.
        about: size and training data, for the docs and ``weights list``.
    """

    use: str
    device: str
    weights: str
    encoder: str
    params: dict[str, Any] = field(default_factory=dict)
    about: str = ""

    def choice(self) -> dict[str, Any]:
        """The encoder choice as a space writes it (``{model: NAME, pooling: mean}``)."""
        return {**choice_params(self.encoder, self.weights), **self.params}

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.use.split("+"))


RECOMMENDED: tuple[Backbone, ...] = (
    Backbone("text", "cpu", "sentence-transformers/all-MiniLM-L6-v2", "hf_text", {"pooling": "mean"},
             "22.7 M parameters, 384-d sentence embeddings (mean of the tokens)"),
    Backbone("text", "gpu", "intfloat/e5-base-v2", "hf_text", {"pooling": "mean"},
             "110 M, 768-d; BERT-base sized, fine-tunes well"),
    Backbone("image", "cpu", "timm:efficientnet_lite0", "timm", {},
             "4.7 M, ImageNet-1k, 1280-d, 224 px"),
    Backbone("image", "gpu", "timm:convnext_base.fb_in22k_ft_in1k", "timm", {},
             "89 M, ImageNet-22k then 1k, 1024-d, 224 px"),
    Backbone("audio", "cpu", "facebook/wav2vec2-base", "hf_audio", {},
             "95 M, 768-d, 16 kHz waveforms (LibriSpeech, self-supervised)"),
    Backbone("audio", "gpu", "MIT/ast-finetuned-audioset-10-10-0.4593", "hf_audio", {},
             "87 M, AudioSet sound events, 768-d, filter banks (more compute per clip than wav2vec2)"),
    Backbone("image+text", "cpu", "openai/clip-vit-base-patch32", "clip", {},
             "151 M (both towers), 512-d shared embedding"),
    Backbone("image+text", "gpu", "google/siglip-so400m-patch14-384", "clip", {},
             "878 M (both towers), 1152-d, 384 px"),
    Backbone("video", "cpu", "torchvision:r3d_18", "r3d_18", {},
             "33 M, Kinetics-400; trained with the model (no frozen cache for video)"),
    Backbone("video", "gpu", "torchvision:r3d_18", "r3d_18", {},
             "33 M, Kinetics-400; trained with the model (no frozen cache for video)"),
)

# The classical encoder each pretrained one is paired with (``tfidf+hf_text``: both read the
# same column), where a space offers it: they win on different data, and together often on both.
CLASSICAL = {"text": "tfidf", "image": "pixels", "audio": "mfcc_stats"}


def choice_params(encoder: str, weights: str) -> dict[str, Any]:
    """How an encoder choice names weights: timm's ``model`` without ``timm:``, torchvision's
    ``pretrained: true``, a hub repository's ``model`` as it is."""
    if weights.startswith("timm:"):
        return {"model": weights.split(":", 1)[1]}
    if weights.startswith("torchvision:"):
        return {"pretrained": True}
    return {"model": weights}


def recommended(device: str, uses: tuple[str, ...] | None = None) -> list[Backbone]:
    """The recommended backbones of ``device`` (for ``uses`` only, when given), in table order."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, but got {device!r}")
    return [b for b in RECOMMENDED if b.device == device and (uses is None or b.use in uses)]


def uses_of(modalities: list[str] | tuple[str, ...]) -> list[str]:
    """The uses a set of modalities has: each modality, and ``image+text`` when both are there."""
    return [u for u in USES if all(m in modalities for m in u.split("+"))]


def device() -> str:
    """``gpu`` where trials train on a CUDA GPU, else ``cpu``; ``AUTOFUSION_DEVICE`` (cpu or gpu)
    overrides it (a GPU machine preparing a search for CPUs, or tests)."""
    forced = os.environ.get("AUTOFUSION_DEVICE", "").strip().lower()
    if forced in DEVICES:
        return forced
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"
