"""The install: the compiled parts of torch, torchvision and torchaudio load and run together,
and the environment is the one ``requirements.lock`` describes (a release that appeared after
the lock was written cannot slip in)."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
REFRESH = "uv pip compile pyproject.toml --extra dev --universal --python-version 3.10 --no-annotate -o requirements.lock"


def test_compiled_ops_of_the_torch_triple_run():
    import torch
    import torchaudio.transforms as T
    import torchvision.ops as ops

    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    assert torch.allclose(x @ x.T, torch.tensor([[5.0, 14.0], [14.0, 50.0]]))
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=torch.float32)
    keep = ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)  # a compiled torchvision op
    assert keep.tolist() == [0, 2]
    mel = T.MelSpectrogram(sample_rate=8000, n_fft=256, n_mels=16)(torch.randn(1, 8000))  # libtorchaudio
    assert mel.shape[:2] == (1, 16) and torch.isfinite(mel).all()


def _locked() -> dict[str, str]:
    """Package -> version of the lock's lines whose markers hold here."""
    env = default_environment()
    out: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            spec = next(iter(req.specifier))
            assert spec.operator == "==", f"requirements.lock: {line!r} is not an exact pin"
            out[canonicalize_name(req.name)] = spec.version
    return out


def _dependency_closure(root: str, extras: tuple[str, ...]) -> set[str]:
    """Every distribution ``root[extras]`` needs here, from the installed metadata."""
    env = default_environment()
    seen: set[str] = set()
    todo = [(root, extras)]
    while todo:
        name, ex = todo.pop()
        for spec in distribution(name).requires or []:
            req = Requirement(spec)
            if req.marker is not None and not any(req.marker.evaluate({**env, "extra": e}) for e in (*ex, "")):
                continue
            key = canonicalize_name(req.name)
            if key not in seen:
                seen.add(key)
                todo.append((req.name, tuple(req.extras)))
    return seen


def test_torch_triple_is_pinned_exactly_in_pyproject():
    text = (ROOT / "pyproject.toml").read_text()
    for pkg in ("torch", "torchvision", "torchaudio"):
        assert re.search(rf'"{pkg}==\d+\.\d+\.\d+"', text), f"pyproject.toml must pin {pkg} exactly"


def test_installed_environment_matches_the_lock():
    locked = _locked()
    try:
        needed = _dependency_closure("autofusion", ("dev",))
    except PackageNotFoundError:  # pragma: no cover - the suite runs on an installed checkout
        pytest.skip("autofusion is not installed")
    problems = []
    for name in sorted(needed):
        try:
            have = distribution(name).version
        except PackageNotFoundError:
            continue  # an optional dependency's marker did not hold
        if name not in locked:
            problems.append(f"{name} {have} is not in requirements.lock")
        elif locked[name] != have:
            problems.append(f"{name} is {have}, the lock says {locked[name]}")
    assert not problems, "; ".join(problems) + f". Install with pip -c requirements.lock, or refresh it: {REFRESH}"


def test_lock_satisfies_pyproject_ranges():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = _locked()
    env = default_environment()
    for spec in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is a dependency but not in requirements.lock; refresh: {REFRESH}"
        assert req.specifier.contains(locked[name], prereleases=True), (
            f"requirements.lock pins {name}=={locked[name]}, outside pyproject's {req.specifier}; refresh: {REFRESH}")
