"""Loading Hugging Face transformers models for the pretrained encoders that use them
(``hf_text`` and ``clip``'s text tower in ``text.py``, ``clip``'s vision tower in ``image.py``,
``hf_audio`` in ``audio.py``). Each names a model: a hub repository in the Hugging Face cache, or
a local folder saved with ``save_pretrained``. transformers is imported only when a model is
built; a logged model rebuilds the architecture from the config saved in its metadata."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from autofusion.modalities.base import Normalize


def config_of(path: str) -> Any:
    """A transformers config read from a model's folder."""
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
    from transformers.utils import logging as hf_logging

    if load:
        hf_logging.disable_progress_bar()  # its "Loading weights" bar would land among the search's lines
        return AutoModel.from_pretrained(extra["source"], dtype=torch.float32)
    return AutoModel.from_config(config_from(extra["config"]), dtype=torch.float32)  # not the config's fp16


def tower_width(cfg: Any, tower: str) -> int:
    """The width of a tower's outputs: its projection's (CLIP) or its hidden size (SigLIP)."""
    from transformers import AutoModel

    with torch.device("meta"):  # the architecture only: no memory, no weights
        model = AutoModel.from_config(cfg)
    proj = getattr(model, f"{'visual' if tower == 'vision' else 'text'}_projection", None)
    return int(proj.out_features) if isinstance(proj, nn.Linear) else int(getattr(cfg, f"{tower}_config").hidden_size)


def clip_tower(extra: dict, load: bool, tower: str) -> nn.Module:
    """A CLIP or SigLIP model's ``tower`` (``text`` or ``vision``) with its projection (and the
    vision tower's pixel normalisation), as a ``ModuleDict``."""
    model = load_model(extra, load)
    proj = getattr(model, f"{'visual' if tower == 'vision' else 'text'}_projection", None)
    parts = {"tower": getattr(model, f"{tower}_model"), "proj": proj if isinstance(proj, nn.Module) else nn.Identity()}
    if tower == "vision":
        parts["norm"] = Normalize(extra["preprocessing"]["mean"], extra["preprocessing"]["std"])
    return nn.ModuleDict(parts)
