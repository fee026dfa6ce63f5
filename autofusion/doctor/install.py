"""The install: compiled libraries that must load *and run* (torch, torchvision, torchaudio,
soundfile, PyAV), the accelerators torch sees, and the command that puts a broken library
back as ``requirements.lock`` pins it."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from autofusion.doctor.records import GIB, OK, WARN, DoctorOptions, Row


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when it is below it (commands to copy)."""
    try:
        rel = path.resolve().relative_to(Path.cwd().resolve())
        return str(rel) if str(rel) != "." else "."
    except ValueError:
        return str(path)


def _source_root() -> Path | None:
    """The checkout autofusion runs from (an editable install with its lock), else None."""
    import autofusion

    root = Path(autofusion.__file__).resolve().parents[1]
    return root if (root / "requirements.lock").is_file() and (root / "pyproject.toml").is_file() else None


def locked_version(dist: str) -> str | None:
    """The version ``requirements.lock`` pins for ``dist`` on this platform, if there is a lock."""
    root = _source_root()
    if root is None:
        return None
    try:
        from packaging.markers import default_environment
        from packaging.requirements import InvalidRequirement, Requirement
        from packaging.utils import canonicalize_name
    except ImportError:  # pragma: no cover - packaging ships with pip's dependencies here
        return None
    env, want = default_environment(), canonicalize_name(dist)
    for line in (root / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) == want and (req.marker is None or req.marker.evaluate(env)):
            spec = next(iter(req.specifier), None)
            return spec.version if spec is not None else None
    return None


def installed_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _same_version(have: str | None, locked: str | None) -> bool:
    """Whether ``have`` satisfies ``==locked`` (a local tag such as +cu130 does not matter)."""
    if have is None or locked is None:
        return False
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import Version

        return Version(have) in SpecifierSet(f"=={locked}")
    except (ImportError, ValueError):
        return have == locked


def reinstall_command(dist: str) -> str:
    """The command that puts back a working ``dist``: the lock's versions of everything when
    ``dist`` differs from the lock (or is missing), else a forced reinstall of that one."""
    pip = _shown(Path(sys.executable).with_name("pip"))
    root = _source_root()
    if root is None:
        return f"{pip} install --force-reinstall {dist}"
    lock = _shown(root / "requirements.lock")
    locked = locked_version(dist)
    if _same_version(installed_version(dist), locked):
        return f"{pip} install -c {lock} --force-reinstall --no-deps {dist}=={locked}"
    return f"{pip} install -c {lock} -e {_shown(root)}"


def _library_row(name: str, dist: str, found: str) -> Row:
    """An ok row, or a warning when the working library is not the lock's version."""
    locked, have = locked_version(dist), installed_version(dist)
    if locked is not None and have is not None and not _same_version(have, locked):
        return Row(name, WARN, f"{found}; but requirements.lock pins {dist}=={locked}", reinstall_command(dist))
    return Row(name, OK, found)


def check_torch(opts: DoctorOptions) -> Row:
    """A matmul and a conv2d through libtorch."""
    import torch

    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    if not torch.allclose(x @ x.T, torch.tensor([[5.0, 14.0], [14.0, 50.0]])):
        raise RuntimeError("a 2x3 matmul gave a wrong result")
    conv = torch.nn.functional.conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3))
    if conv.sum().item() != 36.0:
        raise RuntimeError("a 3x3 conv2d gave a wrong result")
    return _library_row("torch", "torch", f"torch {torch.__version__}: matmul and conv2d run "
                                          f"({torch.get_num_threads()} threads)")


def check_torchvision(opts: DoctorOptions) -> Row:
    """torchvision's compiled ``nms`` (the op that fails when torchvision and torch disagree)."""
    import torch
    import torchvision
    from torchvision.ops import nms

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=torch.float32)
    keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5).tolist()
    if keep != [0, 2]:
        raise RuntimeError(f"nms kept boxes {keep}, expected [0, 2]")
    return _library_row("torchvision", "torchvision", f"torchvision {torchvision.__version__}: nms runs")


def check_torchaudio(opts: DoctorOptions) -> Row:
    """torchaudio's MelSpectrogram on one second of noise."""
    import torch
    import torchaudio
    from torchaudio.transforms import MelSpectrogram

    mel = MelSpectrogram(sample_rate=16000, n_fft=400, n_mels=32)(torch.randn(1, 16000))
    if tuple(mel.shape) != (1, 32, 81) or not torch.isfinite(mel).all():
        raise RuntimeError(f"MelSpectrogram gave shape {tuple(mel.shape)}, expected (1, 32, 81)")
    return _library_row("torchaudio", "torchaudio", f"torchaudio {torchaudio.__version__}: MelSpectrogram runs")


def check_soundfile(opts: DoctorOptions) -> Row:
    """Writes a 0.1 s WAV to a temporary file and reads it back through libsndfile."""
    import numpy as np
    import soundfile as sf

    wave = (np.sin(np.linspace(0, 2 * np.pi * 44, 1600)) * 0.5).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="autofusion-doctor-") as tmp:
        path = Path(tmp) / "tone.wav"
        sf.write(path, wave, 16000, subtype="PCM_16")
        back, rate = sf.read(path, dtype="float32")
    if rate != 16000 or back.shape != wave.shape or float(np.abs(back - wave).max()) > 1e-3:
        raise RuntimeError("a WAV written and read back differs from what was written")
    return _library_row("soundfile", "soundfile",
                        f"soundfile {sf.__version__} ({sf.__libsndfile_version__}): WAV written and read back")


def check_pyav(opts: DoctorOptions) -> Row:
    """Encodes eight 32x32 frames into an MP4 (the codec the demo data uses) and decodes them."""
    import av
    import numpy as np

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with tempfile.TemporaryDirectory(prefix="autofusion-doctor-") as tmp:
        path = Path(tmp) / "clip.mp4"
        with av.open(str(path), mode="w") as out:
            stream = out.add_stream(codec, rate=8)
            stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
            for i in range(8):
                frame = np.full((32, 32, 3), i * 30, dtype=np.uint8)
                out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            out.mux(stream.encode())
        with av.open(str(path)) as src:
            frames = sum(1 for _ in src.decode(video=0))
    if frames != 8:
        raise RuntimeError(f"decoded {frames} frames of the 8 encoded")
    ffmpeg = ".".join(map(str, av.library_versions.get("libavcodec", ())))
    return _library_row("PyAV", "av", f"PyAV {av.__version__} (libavcodec {ffmpeg}): 8 frames encoded ({codec}) "
                                      "and decoded")


def check_accelerators(opts: DoctorOptions) -> Row:
    """CUDA devices torch sees, with their memory; a CPU-only torch where a GPU driver exists
    is a warning."""
    import torch

    if torch.cuda.is_available():
        parts = []
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            try:
                free, _ = torch.cuda.mem_get_info(i)
                room = f", {free / GIB:.1f} free"
            except RuntimeError:
                room = ""
            parts.append(f"cuda:{i} {props.name} ({props.total_memory / GIB:.1f} GiB{room})")
        return Row("accelerators", OK, f"{len(parts)} CUDA device(s), CUDA {torch.version.cuda}: " + "; ".join(parts))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return Row("accelerators", OK, "Apple MPS (trials use the CPU; --gpus-per-trial needs CUDA)")
    driver = shutil.which("nvidia-smi") is not None
    if driver and torch.version.cuda is None:
        return Row("accelerators", WARN, f"an NVIDIA driver is installed but torch {torch.__version__} is a CPU-only "
                                         "build: trials run on the CPU",
                   "install the CUDA build of the pinned torch: see https://pytorch.org/get-started/locally/")
    if driver:
        return Row("accelerators", WARN, f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU although "
                                         "an NVIDIA driver is installed",
                   "check `nvidia-smi` and CUDA_VISIBLE_DEVICES")
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    return Row("accelerators", OK, f"no GPU (torch {torch.__version__}, a {build}): trials run on the CPU")
