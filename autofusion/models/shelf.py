"""The weights shelf: pretrained weights registered under their hub or timm name, so a space and
the lookup (``models.weights``) use one name whichever way the weights came.

``autofusion weights add NAME PATH`` checks that PATH is what NAME says (a Hugging Face folder
that transformers reads, a timm or torchvision state dict that loads into NAME's
architecture), copies it onto the shelf (``home.shelf_dir``; ``--in-place`` registers
it where it is) and notes which encoder reads it; ``autofusion weights pull NAME`` downloads
into the library's own cache and notes it the same way. A space assembled here offers what the
shelf holds for a modality where the recommended backbone is missing
(``autofusion.spaces.pretrained``).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from autofusion.errors import ConfigError
from autofusion.home import shelf_dir, shelf_entries, write_shelf_entry
from autofusion.models import weights
from autofusion.models.backbones import RECOMMENDED

# Copies of the weights for other frameworks, which a folder may hold and no encoder reads.
OTHER_FRAMEWORKS = (".h5", ".msgpack", ".onnx", ".ot", ".tflite", ".mlmodel", ".gguf")


@dataclass(frozen=True)
class Shelved:
    """One row of ``autofusion weights list``.

    Attributes:
        name: as spaces and ``weights pull`` name it.
        encoder: the encoder that reads it (empty: none found).
        use: the modality it encodes, or ``image+text``.
        size: bytes on disk.
        source: where it came from (``added from PATH``, ``pulled``, a library's cache).
        path: its files.
        recommended: the devices whose recommended set it is in (``cpu``, ``gpu``).
    """

    name: str
    encoder: str
    use: str
    size: int
    source: str
    path: str
    recommended: tuple[str, ...] = ()


def add(name: str, path: str | Path, *, in_place: bool = False) -> Shelved:
    """Registers the weights at ``path`` as ``name`` after checking they load as ``name`` says.

    Raises:
        ConfigError: no such path, or the files are not what ``name`` needs (one line).
    """
    src = Path(path).expanduser()
    if not src.exists():
        raise ConfigError(f"weights add {name}: {str(src)!r} does not exist")
    src = src.resolve()
    encoder, use, keep = detect(name, src)
    if not in_place:
        keep = _copy(keep, shelf_dir() / _slug(name))
    entry = {"path": str(keep), "encoder": encoder, "use": use, "size": _size(keep),
             "source": f"added {'in place' if in_place else 'from'} {src}", "added": time.strftime("%Y-%m-%d")}
    write_shelf_entry(name, entry)
    return _row(name, entry)


def pull(name: str) -> Shelved:
    """Downloads ``name`` into its library's cache (``weights.pull``) and notes it on the shelf."""
    path = Path(weights.pull(name))
    try:
        encoder, use, _ = detect(name, path)
    except ConfigError:  # weights no encoder reads (a vision-only transformers model): listed, never offered
        encoder, use = "", ""
    entry = {"path": str(path), "encoder": encoder, "use": use, "size": _size(path), "source": "pulled",
             "added": time.strftime("%Y-%m-%d")}
    write_shelf_entry(name, entry)
    return _row(name, entry)


def listing() -> list[Shelved]:
    """The shelf's entries, then what else the libraries' caches hold."""
    rows = [_row(n, e) for n, e in sorted(shelf_entries().items())]
    kept = [Path(r.path) for r in rows]
    for c in weights.cached():
        if not any(k == Path(c.path) or k.is_relative_to(c.path) for k in kept):
            rows.append(Shelved(c.name, "", "", c.size, f"{c.cache} cache", c.path))
    return rows


def detect(name: str, path: Path) -> tuple[str, str, Path]:
    """(encoder, use, the file or folder to keep) of the weights at ``path`` named ``name``.

    Raises:
        ConfigError: they do not load as ``name`` says.
    """
    if name.startswith("timm:"):
        return "timm", "image", _timm_file(name, path)
    if name.startswith("torchvision:"):
        return (*_torchvision(name, path), path)
    return (*_transformers(name, path), path)


def _timm_file(name: str, path: Path) -> Path:
    """The state dict to keep (a file, or the weights file of a folder saved with timm's
    ``save_for_hf``), after loading it into ``name``'s architecture."""
    import timm

    from autofusion.models.encoders._timm import create

    arch = name.split(":", 1)[1]
    if not timm.is_model(arch):
        raise ConfigError(f"weights add {name}: {arch!r} is unknown to timm {timm.__version__} "
                          "(see timm.list_models())")
    file = path
    if path.is_dir():
        found = [path / f for f in weights.WEIGHT_FILES if (path / f).is_file()]
        if not found:
            raise ConfigError(f"weights add {name}: {path} holds none of {', '.join(weights.WEIGHT_FILES)}")
        file = found[0]
    try:
        create(arch, str(file))
    except ConfigError as exc:
        raise ConfigError(f"weights add {name}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - torch and safetensors raise many kinds for a file they cannot read
        raise ConfigError(f"weights add {name}: {file} is no state dict torch reads: "
                          f"{weights.first_line(exc)}") from None
    return file


def _torchvision(name: str, path: Path) -> tuple[str, str]:
    import torch
    import torchvision

    from autofusion.models import ENCODERS

    arch = name.split(":", 1)[1]
    readers = [(arch, m) for m, reg in ENCODERS.items() if arch in reg]
    if not readers:
        raise ConfigError(f"weights add {name}: no encoder reads torchvision's {arch!r}")
    try:
        net = torchvision.models.get_model(arch, weights=None)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"weights add {name}: {path} does not load into torchvision's {arch}: "
                          f"{weights.first_line(exc)}") from None
    return readers[0]


def _transformers(name: str, path: Path) -> tuple[str, str]:
    """hf_text, clip or hf_audio, by what the folder holds: a config with text and vision
    configs (CLIP, SigLIP), a feature extractor with a sampling rate (audio), or a tokenizer."""
    import json

    if not path.is_dir() or not (path / "config.json").is_file():
        raise ConfigError(f"weights add {name}: {path} is no transformers model folder (no config.json); a timm "
                          "state dict is added as timm:NAME, a torchvision one as torchvision:NAME")
    if not any(path.glob("*.safetensors")) and not any(path.glob("pytorch_model*.bin")):
        raise ConfigError(f"weights add {name}: {path} holds no weights (*.safetensors or pytorch_model.bin)")
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    if "text_config" in config and "vision_config" in config:
        return "clip", "image+text"
    pre = path / "preprocessor_config.json"
    if pre.is_file() and "sampling_rate" in json.loads(pre.read_text(encoding="utf-8")):
        return "hf_audio", "audio"
    from transformers import AutoTokenizer

    try:
        AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"weights add {name}: {path} has no tokenizer, audio feature extractor or CLIP towers "
                          f"({weights.first_line(exc)}); an image model is added from timm as timm:NAME") from None
    return "hf_text", "text"


def _copy(src: Path, dest: Path) -> Path:
    """``src`` (a file or a folder) copied to ``dest`` (a folder) through a temporary folder, so
    a copy cut short leaves nothing registered; returns the copied file or folder. Copies are
    writable whatever the source's permissions, and other frameworks' files stay behind."""
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files = [src] if src.is_file() else sorted(f for f in src.rglob("*") if f.is_file())
    for f in files:
        if f.suffix in OTHER_FRAMEWORKS:
            continue
        out = tmp / (f.name if f == src else f.relative_to(src))
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, out)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest / src.name if src.is_file() else dest


def _slug(name: str) -> str:
    return name.replace("/", "--").replace(":", "--")


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _row(name: str, entry: dict) -> Shelved:
    devices = tuple(b.device for b in RECOMMENDED if b.weights == name)
    return Shelved(name, entry.get("encoder", ""), entry.get("use", ""), int(entry.get("size", 0)),
                   str(entry.get("source", "")), str(entry["path"]), devices)
