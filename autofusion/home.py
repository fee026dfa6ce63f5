"""Where autofusion keeps things: its home (``$AUTOFUSION_HOME`` or ``./.autofusion``) and the
folders in it (the decode and feature caches, a search's resumable state, the spaces assembled
from data), and where pretrained weights are kept (the libraries' own caches and autofusion's
weights shelf). Read from the environment at each call (so a changed ``HF_HOME`` is seen). A
leaf without heavy imports: `autofusion doctor` reads it before torch is known to load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def autofusion_home() -> Path:
    """Where autofusion keeps caches and search state: ``$AUTOFUSION_HOME`` or ``./.autofusion``."""
    return Path(os.environ.get("AUTOFUSION_HOME", ".autofusion")).resolve()


def decode_cache_dir(home: Path) -> Path:
    """The decode cache (decoded media and features by data fingerprint): ``<home>/cache``."""
    return home / "cache"


def state_dir(home: Path, search_id: str) -> Path:
    """The folder that holds search ``search_id``'s state (for ``--resume``)."""
    return home / "searches" / search_id


def spaces_dir(home: Path) -> Path:
    """Where the spaces assembled from data are written."""
    return home / "spaces"


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


# --- the weights shelf ----------------------------------------------------------------------
# Weights registered under their hub or timm name (``autofusion weights add`` / ``pull``), so
# spaces and the lookup use one name whichever way the weights came. An index file names each
# entry's files (copied onto the shelf, or where ``pull`` put them in a library's cache).
SHELF_INDEX = "shelf.json"


def shelf_dir() -> Path:
    """The shelf: ``$AUTOFUSION_WEIGHTS``, else ``$AUTOFUSION_HOME/weights`` where that is set,
    else ``~/.cache/autofusion/weights`` (one per user, like the libraries' caches)."""
    explicit = os.environ.get("AUTOFUSION_WEIGHTS")
    if explicit:
        return Path(explicit).expanduser().resolve()
    home = os.environ.get("AUTOFUSION_HOME")
    if home:
        return Path(home).expanduser().resolve() / "weights"
    return _cache_root() / "autofusion" / "weights"


def shelf_entries() -> dict[str, dict]:
    """Every shelf entry by name (``path``, ``encoder``, ``use``, ``source``, ``size``, ``added``);
    entries whose files are gone are left out."""
    index = shelf_dir() / SHELF_INDEX
    if not index.is_file():
        return {}
    try:
        entries = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {n: e for n, e in entries.items() if isinstance(e, dict) and Path(e.get("path", "")).exists()}


def write_shelf_entry(name: str, entry: dict) -> None:
    """Adds (or replaces) ``name`` in the shelf's index, atomically."""
    folder = shelf_dir()
    folder.mkdir(parents=True, exist_ok=True)
    index = folder / SHELF_INDEX
    entries = json.loads(index.read_text(encoding="utf-8")) if index.is_file() else {}
    entries[name] = entry
    tmp = index.with_suffix(".tmp")
    tmp.write_text(json.dumps(entries, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(index)
