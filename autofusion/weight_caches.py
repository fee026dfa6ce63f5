"""Where the libraries keep downloaded pretrained weights, read from the environment at each
call (so a changed ``HF_HOME`` is seen). A leaf without heavy imports: `autofusion doctor`
reads it before torch is known to load."""

from __future__ import annotations

import os
from pathlib import Path


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()


def hf_hub_cache() -> Path:
    """Where transformers and timm keep downloaded weights (huggingface_hub's rules)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME")
    return (Path(home).expanduser() if home else _cache_root() / "huggingface") / "hub"


def torch_hub_checkpoints() -> Path:
    """Where torchvision keeps downloaded weights (``torch.hub.get_dir()/checkpoints``)."""
    home = os.environ.get("TORCH_HOME")
    return (Path(home).expanduser() if home else _cache_root() / "torch") / "hub" / "checkpoints"
