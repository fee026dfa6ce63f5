"""Where pretrained weights come from, in one place: a local folder or file, the weights shelf
(``autofusion weights add NAME PATH`` registers a copy under its hub or timm name;
``models.shelf``), or the libraries' own caches (the Hugging Face hub cache for transformers
and timm, the torch hub cache for torchvision), looked up in that order. A search never
downloads: weights that are not there stop it before any run is created, with one line naming
the model and the command that fetches them (``autofusion weights pull NAME``), which uses the
libraries' own download calls.

Names: a local folder or file path; ``timm:NAME`` and ``torchvision:NAME`` for those
libraries' models; anything else is a Hugging Face hub repository (``bert-base-uncased``,
``sentence-transformers/all-MiniLM-L6-v2``, ``timm/resnet18.a1_in1k``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autofusion.errors import AutofusionError, ConfigError
from autofusion.home import (
    hf_hub_cache,
    shelf_dir,
    shelf_entries,
    torch_hub_checkpoints,
)

# What `weights pull` fetches of a hub repository: configs, tokenizers, processors and the
# PyTorch weights (not the TensorFlow, Flax, ONNX or Rust copies many repositories also hold).
PULL_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors", "*.tiktoken", "merges.txt", "vocab*"]
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class Weights:
    """Pretrained weights found on this machine.

    Attributes:
        name: the model as the space names it.
        path: the local folder (transformers) or file (timm, torchvision), absolute.
        identity: the name and a hash of the weights (a hub snapshot's commit, or the files'
            sizes and modification times): what feature caches are keyed by.
        arch: the architecture to build (timm's model name; the name itself elsewhere).
    """

    name: str
    path: str
    identity: str
    arch: str = ""


def not_found(name: str, where: str, pull: str) -> ConfigError:
    """The one-line error of weights that are not on this machine."""
    return ConfigError(f"pretrained weights {name!r} are not {where}; a search never downloads: fetch them where a "
                       f"network exists with `autofusion weights pull {pull}` (or register a copy with "
                       f"`autofusion weights add {pull} PATH`, or give a local folder)")


def shelved(name: str) -> Path | None:
    """The files ``autofusion weights add`` put on the shelf under ``name`` (None: none added;
    pulled weights are found in the library's cache, where ``pull`` put them)."""
    entry = shelf_entries().get(name)
    return Path(entry["path"]) if entry and str(entry.get("source", "")).startswith("added") else None


def locate(name: str) -> Weights:
    """The weights of ``name`` as ``weights pull`` names them (a hub repository, ``timm:NAME``,
    ``torchvision:NAME``), wherever they are here.

    Raises:
        ConfigError: they are not on this machine (the one line that says how to fetch them).
    """
    if name.startswith("timm:"):
        return timm_model(name.split(":", 1)[1])
    if name.startswith("torchvision:"):
        return torchvision_model(name.split(":", 1)[1])
    return hf_model(name)


def maybe_here(name: str) -> bool:
    """False when ``name``'s weights cannot be here, decided from the folders alone (no timm or
    torchvision import, 2-3 s of a search's start-up): nothing on the shelf under that name,
    no Hugging Face cache folder that could hold it, no file in the torch hub cache. True means
    "look": :func:`locate` decides."""
    if local_path(name) is not None or shelved(name) is not None:
        return True
    library, _, model = name.partition(":")
    if library in ("timm", "torchvision"):
        hub = torch_hub_checkpoints()
        if hub.is_dir() and any(hub.iterdir()):
            return True
        if library == "torchvision":
            return False
        cache = hf_hub_cache()  # timm's hub repositories: timm/NAME.TAG, or another owner's
        wanted = model.lower()
        return cache.is_dir() and any(p.name.startswith("models--") and wanted in p.name.lower()
                                      for p in cache.iterdir())
    return (hf_hub_cache() / f"models--{name.replace('/', '--')}").is_dir()


def origin(w: Weights) -> str:
    """Where weights were found, in words: the shelf, a library's cache, or a local path."""
    path = Path(w.path).resolve()
    for root, words in ((shelf_dir(), "the shelf"), (hf_hub_cache(), "the Hugging Face cache"),
                        (torch_hub_checkpoints(), "the torch hub cache")):
        if path.is_relative_to(root.resolve()):
            return words
    return "a local path"


def local_path(name: str) -> Path | None:
    """``name`` as an existing local file or folder (``~`` expanded), else None."""
    if not name:
        return None
    p = Path(name).expanduser()
    return p.resolve() if p.exists() else None


def files_hash(path: Path) -> str:
    """A short hash of the relative names, sizes and modification times of the files under
    ``path`` (or of the file itself), like the data fingerprint: re-saved weights change it."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(path) if f != path else f.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


def _hub_snapshot(repo: str, name: str, pull: str) -> Path:
    """The cached snapshot folder of hub repository ``repo``; never downloads."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    cache = hf_hub_cache()
    try:
        return Path(snapshot_download(repo, cache_dir=cache, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, OSError, ValueError):
        raise not_found(name, f"a local folder nor in the Hugging Face cache ({cache})", pull) from None


def hf_model(name: str) -> Weights:
    """A transformers model (with its tokenizer or feature extractor): a local folder saved with
    ``save_pretrained``, or a hub repository in the Hugging Face cache."""
    local = local_path(name)
    if local is not None:
        if not (local / "config.json").is_file():
            raise ConfigError(f"model {name!r}: {local} is no transformers model folder (no config.json); "
                              "save one with save_pretrained, or name a hub repository")
        return Weights(name, str(local), f"{local.name}@{files_hash(local)}", name)
    shelf = shelved(name)
    if shelf is not None:
        return Weights(name, str(shelf), f"{name}@{files_hash(shelf)}", name)
    snap = _hub_snapshot(name, name, name)
    return Weights(name, str(snap), f"{name}@{snap.name}", name)


def timm_model(name: str, checkpoint: str | None = None) -> Weights:
    """A timm image model: ``checkpoint`` (a local state-dict file) when given, else a local
    folder saved with timm's ``save_for_hf`` (``config.json`` naming the architecture), else the
    model's default pretrained weights in the Hugging Face (or torch hub) cache."""
    import timm

    local = local_path(name)
    if local is not None and local.is_dir():
        import json

        cfg = local / "config.json"
        arch = json.loads(cfg.read_text()).get("architecture") if cfg.is_file() else None
        files = [local / f for f in WEIGHT_FILES if (local / f).is_file()]
        if not arch or not files:
            raise ConfigError(f"timm model {name!r}: {local} holds no config.json with an architecture and weights "
                              "(save one with timm.models.push_to_hf.save_for_hf)")
        return Weights(name, str(files[0]), f"{arch}@{files_hash(local)}", arch)
    arch = name
    if not timm.is_model(arch):
        raise ConfigError(f"timm model {name!r}: unknown to timm {timm.__version__} (see timm.list_models())")
    checkpoint = checkpoint or shelved(f"timm:{name}")
    if checkpoint:
        file = local_path(str(checkpoint))
        if file is None or not file.is_file():
            raise ConfigError(f"timm model {name!r}: checkpoint {checkpoint!r} is not a file")
        return Weights(name, str(file), f"{arch}@{files_hash(file)}", arch)
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    pull = f"timm:{name}"
    if cfg is not None and cfg.hf_hub_id:
        repo = cfg.hf_hub_id.split("@")[0]
        snap = _hub_snapshot(repo, name, pull)
        wanted = [cfg.hf_hub_filename] if cfg.hf_hub_filename else list(WEIGHT_FILES)
        files = [snap / f for f in wanted if f and (snap / f).is_file()]
        if not files:
            raise not_found(name, f"complete in the Hugging Face cache ({snap} has no weights file)", pull)
        return Weights(name, str(files[0]), f"{repo}@{snap.name}", arch)
    if cfg is not None and cfg.url:
        file = torch_hub_checkpoints() / os.path.basename(cfg.url)
        if not file.is_file():
            raise not_found(name, f"in the torch hub cache ({file.parent})", pull)
        return Weights(name, str(file), f"{arch}@{file.name}", arch)
    raise ConfigError(f"timm model {name!r} has no pretrained weights to load; give a checkpoint file")


def torchvision_model(arch: str) -> Weights:
    """torchvision's default pretrained weights of ``arch``, from the torch hub cache."""
    shelf = shelved(f"torchvision:{arch}")
    if shelf is not None:
        return Weights(f"torchvision:{arch}", str(shelf), f"{arch}@{files_hash(shelf)}", arch)
    import torchvision

    try:
        url = torchvision.models.get_model_weights(arch).DEFAULT.url
    except (ValueError, AttributeError, KeyError):
        raise ConfigError(f"torchvision model {arch!r} has no pretrained weights") from None
    file = torch_hub_checkpoints() / os.path.basename(url)
    if not file.is_file():
        raise not_found(f"torchvision:{arch}", f"in the torch hub cache ({file.parent})", f"torchvision:{arch}")
    return Weights(f"torchvision:{arch}", str(file), f"{arch}@{file.name}", arch)


def pull(name: str) -> str:
    """Downloads ``name``'s weights into the library's own cache (needs a network); returns
    where they are. ``timm:NAME`` and ``torchvision:NAME`` use those libraries' download;
    anything else is a hub repository (its configs, tokenizer files and PyTorch weights).

    Raises:
        AutofusionError: the download failed (no network, an unknown name, ...), in one line.
    """
    try:
        return _pull(name)
    except AutofusionError:
        raise
    except Exception as exc:  # noqa: BLE001 - the libraries raise many kinds; the user needs one line
        raise AutofusionError(f"weights pull {name}: {type(exc).__name__}: {first_line(exc, 300)}") from None


def first_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's first line (its type where it has no message), cut at ``limit`` characters."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]


def _pull(name: str) -> str:
    if name.startswith("timm:"):
        import timm

        model = name.split(":", 1)[1]
        timm.create_model(model, pretrained=True, num_classes=0)
        return timm_model(model).path
    if name.startswith("torchvision:"):
        import torchvision

        arch = name.split(":", 1)[1]
        torchvision.models.get_model(arch, weights="DEFAULT")
        return torchvision_model(arch).path
    from huggingface_hub import list_repo_files, snapshot_download

    patterns = list(PULL_PATTERNS)
    if not any(f.endswith(".safetensors") for f in list_repo_files(name)):
        patterns.append("pytorch_model.bin")  # an older repository without safetensors
    return snapshot_download(name, cache_dir=hf_hub_cache(), allow_patterns=patterns)


@dataclass(frozen=True)
class Cached:
    """One cached model: where it is kept, its name and its size on disk."""

    cache: str
    name: str
    size: int
    path: str


def cached() -> list[Cached]:
    """Every model in the Hugging Face hub cache and every torchvision checkpoint in the torch
    hub cache, with its size."""
    out: list[Cached] = []
    hub = hf_hub_cache()
    if hub.is_dir():
        from huggingface_hub import scan_cache_dir

        for repo in sorted(scan_cache_dir(hub).repos, key=lambda r: r.repo_id):
            out.append(Cached("huggingface", repo.repo_id, int(repo.size_on_disk), str(repo.repo_path)))
    torch_hub = torch_hub_checkpoints()
    if torch_hub.is_dir():
        for f in sorted(p for p in torch_hub.iterdir() if p.is_file()):
            out.append(Cached("torch hub", f.name, f.stat().st_size, str(f)))
    return out


def torchvision_net(arch: str, pretrained: bool) -> Any:
    """A torchvision model, with its default pretrained weights from the torch hub cache when
    ``pretrained`` (the lookup above: a missing file stops with the pull command)."""
    import torch
    import torchvision

    net = torchvision.models.get_model(arch, weights=None)
    if pretrained:
        state = torch.load(torchvision_model(arch).path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    return net


def check_torchvision(arch: str, params: dict) -> None:
    """Before any run: a space that may pick ``pretrained: true`` needs the weights here."""
    value = params.get("pretrained", False)
    choices = getattr(value, "choices", None)
    if value is True or (choices is not None and True in choices):
        torchvision_model(arch)
