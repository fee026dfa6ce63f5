"""The bad-input catalogue: each kind of bad space file, manifest, data file, flag value and
store, through the real CLI (``autofusion search``). Each must stop with exactly one line,
``error: ...``, that names the file, key or value and says what to do; exit code 2; no
traceback; and nothing written to MLflow (not even an empty parent run).

RELIABILITY.md lists every case with the message users see. Cases covered elsewhere (a
missing manifest, an unknown task or metric: tests/integration/test_cli.py; an unreachable
tracking server: tests/integration/test_mlflow_server.py) are not repeated here.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml
from click.testing import CliRunner, Result
from PIL import Image

from autofusion.cli import cli
from tests.reliability.common import SPACES, one_error_line, run_count

IMAGE_TEXT = SPACES / "image_text.yaml"


@dataclass
class Ctx:
    """What a case builds its bad input from."""

    tmp: Path
    demos: dict[str, Path]


@dataclass(frozen=True)
class Case:
    """One kind of bad input.

    Attributes:
        id: the test id, also the row name in RELIABILITY.md.
        build: writes the bad input under ``ctx.tmp``; returns the extra ``search`` arguments
            and the strings the one error line must hold (file, key, value, the fix).
        needs_demo: the search's own demo data must exist (the error comes after the data stage).
        needs_ray: the error comes from the Ray cluster's resources (uses the session's Ray).
    """

    id: str
    build: Callable[[Ctx], tuple[list[str], list[str]]]
    needs_demo: bool = False
    needs_ray: bool = False


# ------------------------------------------------------------------ builders


def _space(ctx: Ctx, edit: Callable[[dict], None]) -> Path:
    """The built-in image_text space with ``edit`` applied to its parsed YAML."""
    doc = yaml.safe_load(IMAGE_TEXT.read_text())
    edit(doc)
    path = ctx.tmp / "space.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _space_text(ctx: Ctx, old: str, new: str) -> Path:
    """The built-in image_text space with one piece of text replaced (for syntax-level errors)."""
    text = IMAGE_TEXT.read_text()
    assert old in text, f"the built-in space no longer holds {old!r}"
    path = ctx.tmp / "space.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def space_case(edit: Callable[[dict], None], *needles: str) -> Callable[[Ctx], tuple[list[str], list[str]]]:
    def build(ctx: Ctx) -> tuple[list[str], list[str]]:
        path = _space(ctx, edit)
        return ["--space", str(path)], [str(path), *needles]

    return build


def _set(*keys_and_value) -> Callable[[dict], None]:
    *keys, value = keys_and_value

    def edit(doc: dict) -> None:
        d = doc
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value

    return edit


def _rename(keys: tuple[str, ...], old: str, new: str) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        d = doc
        for k in keys:
            d = d[k]
        d[new] = d.pop(old)

    return edit


def _data(ctx: Ctx, task: str = "image_text") -> Path:
    """A copy of a tiny demo dataset; returns its manifest."""
    folder = ctx.tmp / "data"
    shutil.copytree(ctx.demos[task], folder)
    return folder / "manifest.csv"


def manifest_case(edit: Callable[[Path, pd.DataFrame], Path | None], *needles: str, task: str = "image_text",
                  name_task: bool = False) -> Callable[[Ctx], tuple[list[str], list[str]]]:
    """Edits a demo manifest (``edit`` may write a different file and return its path); the
    search reads it with the space assembled from its columns, or with ``--task`` (another
    task than image_text, or ``name_task``)."""

    def build(ctx: Ctx) -> tuple[list[str], list[str]]:
        manifest = _data(ctx, task)
        df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
        out = edit(manifest, df) or manifest
        args = ["--data", str(out)] + (["--task", task] if task != "image_text" or name_task else [])
        return args, [str(out), *needles]

    return build


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _cp1252_text(manifest: Path, df: pd.DataFrame) -> None:
    """Row 3's text holds an accent, and the file is saved as Windows-1252, not UTF-8."""
    df.loc[2, "text"] = "a caf\u00e9 near the cat"
    df.to_csv(manifest, index=False, encoding="cp1252")


def _write_df(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path


def _file_of(manifest: Path, df: pd.DataFrame, column: str, row: int) -> Path:
    return manifest.parent / df[column][row - 1]


def _delete(column: str, row: int) -> Callable[[Path, pd.DataFrame], None]:
    def edit(manifest: Path, df: pd.DataFrame) -> None:
        _file_of(manifest, df, column, row).unlink()

    return edit


def _cell(column: str, row: int, value: str) -> Callable[[Path, pd.DataFrame], None]:
    def edit(manifest: Path, df: pd.DataFrame) -> None:
        df.loc[row - 1, column] = value
        _write_df(df, manifest)

    return edit


def _overwrite(column: str, row: int, writer: Callable[[Path], None]) -> Callable[[Path, pd.DataFrame], None]:
    def edit(manifest: Path, df: pd.DataFrame) -> None:
        path = _file_of(manifest, df, column, row)
        path.unlink()
        writer(path)

    return edit


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not what the name says" * 10)


def _tiny_png(path: Path) -> None:
    with open(path, "wb") as f:  # a real PNG, whatever the file's name says
        Image.new("RGB", (4, 4), (200, 30, 30)).save(f, format="PNG")


def _tiny_wav(path: Path) -> None:
    with open(path, "wb") as f:  # a real WAV, whatever the file's name says
        sf.write(f, np.zeros(800, dtype=np.float32), 8000, format="WAV")


def _truncate(column: str, row: int) -> Callable[[Path, pd.DataFrame], None]:
    def edit(manifest: Path, df: pd.DataFrame) -> None:
        path = _file_of(manifest, df, column, row)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])

    return edit


def _cell(column: str, row: int, value: str, na_rep: str = "") -> Callable[[Path, pd.DataFrame], Path]:
    def edit(manifest: Path, df: pd.DataFrame) -> Path:
        df.loc[row - 1, column] = value
        df.to_csv(manifest, index=False, na_rep=na_rep)
        return manifest

    return edit


def flag_case(*args: str, needles: tuple[str, ...]) -> Callable[[Ctx], tuple[list[str], list[str]]]:
    def build(ctx: Ctx) -> tuple[list[str], list[str]]:
        return list(args), list(needles)

    return build


def _mlruns_unwritable(ctx: Ctx) -> tuple[list[str], list[str]]:
    """An ``mlruns/`` that cannot hold the store. Root ignores permission bits, so there
    ``mlruns`` is a regular file and the store's folder cannot be created."""
    mlruns = ctx.tmp / "blocked" / "mlruns"
    mlruns.parent.mkdir()
    uri = f"sqlite:///{mlruns / 'mlflow.db'}"
    if os.geteuid() == 0:
        mlruns.write_text("not a folder")
        return ["--tracking-uri", uri], [str(mlruns), "is a file, not a folder", "--tracking-uri"]
    mlruns.mkdir()
    mlruns.chmod(0o500)
    return ["--tracking-uri", uri], [str(mlruns / "mlflow.db"), "is not writable", "--tracking-uri"]


def _line_of(path: Path, text: str) -> int:
    """The 1-based line of ``path`` that holds ``text`` (the space files change; the rule doesn't)."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), start=1) if text in line)


# ------------------------------------------------------------------ the catalogue

LR = ("optimizer", "lr")

CASES: list[Case] = [
    # --- search-space files
    Case("space-bad-yaml", lambda ctx: (
        ["--space", str(p := _space_text(ctx, "mid: {dim: 64}", "mid: {dim: 64"))],
        [str(p), f"invalid YAML: line {(n := _line_of(p, 'mid: {dim: 64')) + 1}, column 5: expected ',' or '}}'",
         f"(while parsing a flow mapping that starts at line {n}, column 10)"])),
    Case("space-missing-file", flag_case("--space", "no_such_space.yaml",
                                         needles=("no_such_space.yaml' does not exist",
                                                                  "autofusion spaces show TASK > my_space.yaml"))),
    Case("space-empty-file", lambda ctx: (["--space", str(_empty(ctx.tmp / "empty.yaml"))],
                                          [str(ctx.tmp / "empty.yaml"), "the file is empty"])),
    Case("space-duplicate-key", lambda ctx: (
        ["--space", str(p := _space_text(ctx, "    gated: {dim: 64}", "    mid: {dim: 32}"))],
        [str(p), "fusion.choices.mid: duplicate key at line", "only the last would count"])),
    Case("space-unknown-top-level-key", space_case(_rename((), "search", "serach"),
                                                   "serach: unknown key; did you mean 'search'?")),
    Case("space-unknown-nested-key", space_case(
        _rename(("search",), "num_trials", "num_trails"),
        "search.num_trails: unknown key; did you mean 'num_trials'?")),
    Case("space-unknown-distribution-key", space_case(
        _set("head", "dropout", {"type": "float", "low": 0.0, "hihg": 0.3}),
        "head.dropout.hihg: unknown key; did you mean 'high'? (got 0.3)")),
    Case("space-unknown-encoder", space_case(
        _rename(("encoders", "image", "choices"), "mobilenet_v3_small", "resnet81"),
        "encoders.image.choices.resnet81: unknown image encoder 'resnet81'; known: ", "small_cnn")),
    Case("space-unknown-encoder-parameter", space_case(
        _rename(("encoders", "image", "choices", "small_cnn"), "depth", "dept"),
        "encoders.image.choices.small_cnn.dept: unknown parameter of encoder 'small_cnn'; known: ", "depth")),
    Case("space-unknown-fusion", space_case(
        _rename(("fusion", "choices"), "gated", "concat"),
        "fusion.choices.concat: unknown fusion 'concat'; known: ", "gated")),
    Case("space-unknown-loss", space_case(
        _rename(("loss", "choices"), "cross_entropy", "hinge"), "loss.choices.hinge: unknown loss 'hinge'; known: ",
        "cross_entropy")),
    Case("space-unknown-optimizer", space_case(
        _rename(("optimizer", "choices"), "adam", "adamax"),
        "optimizer.choices.adamax: unknown optimizer 'adamax'; known: ", "adamw")),
    Case("space-empty-choices", space_case(_set("loss", "choices", {}), "loss.choices: must be a non-empty mapping")),
    Case("space-empty-categorical", space_case(
        _set("head", "hidden", {"type": "categorical", "choices": []}), "head.hidden",
        "categorical needs a non-empty 'choices' list")),
    Case("space-low-above-high", space_case(
        _set(*LR, {"type": "float", "low": 0.01, "high": 0.0001, "log": True}),
        "optimizer.lr: low <= high must hold, but got (low=0.01, high=0.0001)")),
    Case("space-negative-lr", space_case(_set(*LR, -0.001),
                                         "optimizer.lr: the learning rate must be > 0, but got -0.001")),
    Case("space-zero-lr", space_case(_set(*LR, {"type": "categorical", "choices": [0.0, 0.001]}),
                                     "optimizer.lr: the learning rate must be > 0, but got 0.0")),
    Case("space-lr-not-a-number", space_case(_set(*LR, "fast"), "optimizer.lr", "'fast'")),
    # --- manifests
    Case("manifest-empty-file", manifest_case(lambda m, df: _empty(m), "is empty; write a header row")),
    Case("manifest-header-only", manifest_case(lambda m, df: _write_df(df.head(0), m),
                                               "has a header but no rows; add one row per sample")),
    Case("manifest-unknown-format", manifest_case(
        lambda m, df: _write_df(df, m.with_suffix(".ods")), "unknown format '.ods'; use .csv, .tsv, .jsonl")),
    Case("manifest-csv-named-xlsx", manifest_case(
        lambda m, df: _write_df(df, m.with_suffix(".xlsx")), "manifest.xlsx' cannot be parsed as excel: ")),
    Case("manifest-not-utf8", manifest_case(_cp1252_text, "is not UTF-8 text (line 4, byte", "save it as UTF-8")),
    Case("manifest-no-label-column", manifest_case(
        lambda m, df: _write_df(df.rename(columns={"label": "answer"}), m),
        "no label column; columns are id, image, text, answer; name one with --columns label=COLUMN")),
    Case("manifest-columns-flag-names-a-missing-column", lambda ctx: (
        ["--data", str(m := _data(ctx)), "--columns", "text=caption"],
        [str(m), "column 'caption' (--columns text) not found; columns: id, image, text, label"])),
    Case("manifest-columns-flag-names-texts-as-images", lambda ctx: (  # the column is wrong, not every row
        ["--data", str(m := _data(ctx)), "--columns", "image=text"],
        [str(m), "cells of column 'text' (read as image) could be read, e.g. row 1 image: ",
         "that --columns image=COLUMN names the image column"])),
    Case("manifest-columns-flag-malformed", flag_case("--columns", "image",
                                                      needles=("--columns: expected ROLE=COLUMN, got 'image'",))),
    # --- rows and data files
    Case("image-missing", manifest_case(_delete("image", 3), "row 3 image: 'images/00002.png': file not found",
                                        "--on-bad-rows skip")),
    Case("image-url", manifest_case(_cell("image", 2, "https://example.com/photo.jpg"),
                                    "row 2 image: 'https://example.com/photo.jpg': a URL: autofusion reads local files "
                                    "only; download the files and give their paths")),
    Case("image-corrupt", manifest_case(_overwrite("image", 2, _garbage),
                                        "row 2 image: 'images/00001.png': not a readable image", "--on-bad-rows skip")),
    Case("image-is-audio", manifest_case(_overwrite("image", 5, _tiny_wav),
                                         "row 5 image: 'images/00004.png': not a readable image")),
    Case("audio-missing", manifest_case(_delete("audio", 4), "row 4 audio: 'audio/00003.wav': file not found",
                                        "--on-bad-rows skip", task="audio_video")),
    Case("audio-corrupt", manifest_case(_overwrite("audio", 1, _tiny_png),
                                        "row 1 audio: 'audio/00000.wav': not a readable audio file",
                                        "--on-bad-rows skip", task="audio_video")),
    Case("video-missing", manifest_case(_delete("video", 6), "row 6 video: 'video/00005.mp4': file not found",
                                        "--on-bad-rows skip", task="audio_video")),
    Case("video-corrupt", manifest_case(_truncate("video", 2), "row 2 video: 'video/00001.mp4': not a readable video",
                                        "--on-bad-rows skip", task="audio_video")),
    # the built-in space: an empty text is a bad row (a space assembled from the data reads it as an empty text)
    Case("text-empty", manifest_case(_cell("text", 7, ""),
                                     "row 7 text: empty text (allow with data.allow_missing: [text])",
                                     "--on-bad-rows skip", name_task=True)),
    Case("label-nan", manifest_case(_cell("label", 9, "NaN", na_rep="NaN"), "row 9 label: empty label",
                                    "--on-bad-rows skip")),
    Case("label-all-empty", manifest_case(lambda m, df: _write_df(df.assign(label=""), m),
                                          "no row has a usable label in column 'label' (e.g. row 1 label: empty label)",
                                          "point --columns label=COLUMN at the label column")),
    Case("label-flag-names-the-image-column", lambda ctx: (  # a class per row: not a label column
        ["--data", str(m := _data(ctx)), "--columns", "label=image"],
        [str(m), "column 'image' holds", "different labels in", "too many to be classes; point --columns "
         "label=COLUMN at the label column"])),
    Case("label-one-class", manifest_case(
        lambda m, df: _write_df(df.assign(label="alpha"), m),
        "label column 'label' has a single class ('alpha'); classification needs at least 2: ",
        "add samples of other classes")),
    # --- flag values
    Case("flag-num-trials-zero", flag_case("--num-trials", "0", needles=("--num-trials", "0"))),
    Case("flag-cpus-per-trial-zero", flag_case("--cpus-per-trial", "0", needles=("--cpus-per-trial", "0"))),
    Case("flag-unknown-sampler", flag_case("--sampler", "bayes", needles=("--sampler", "bayes", "tpe"))),
    Case("flag-cpus-per-trial-fraction", flag_case(
        "--cpus-per-trial", "1.5", needles=("--cpus-per-trial above 1 must be a whole number, but got 1.5",)),
        needs_demo=True),
    Case("flag-unknown-objective", flag_case(
        "--objective", "accuracy", needles=("unknown objective 'accuracy'; known: num_params, latency_ms",)),
        needs_demo=True),
    Case("flag-gpus-without-gpu", flag_case(
        "--gpus-per-trial", "1", needles=("--gpus-per-trial 1.0: this Ray cluster has no GPU",)),
        needs_demo=True, needs_ray=True),
    Case("flag-resume-unknown-search", flag_case(
        "--resume", "0123abcd", needles=("--resume 0123abcd: no saved state at", "AUTOFUSION_HOME"))),
    Case("flag-warm-start-unknown-search", flag_case(
        "--warm-start", "0123abcd", needles=("--warm-start 0123abcd: no Optuna history at",))),
    # --- stores
    Case("tracking-file-store-uri", flag_case(
        "--tracking-uri", "file:///tmp/mlruns", needles=("'file:///tmp/mlruns'", "file store is deprecated",
                                                         "sqlite:///mlruns/mlflow.db"))),
    Case("tracking-sqlite-uri-malformed", flag_case(
        "--tracking-uri", "sqlite://mlflow.db", needles=("'sqlite://mlflow.db'", "use sqlite:///PATH/TO/mlflow.db"))),
    Case("tracking-mlruns-unwritable", _mlruns_unwritable),
]


def invoke(uri: str, args: list[str], *, verbose: bool = False) -> Result:
    pre = ["--verbose"] if verbose else []
    return CliRunner().invoke(cli, [*pre, "search", "--tracking-uri", uri, "--demo-samples", "48", "--quiet", *args])


def _params() -> list:
    return [pytest.param(c, id=c.id) for c in CASES]


@pytest.fixture
def ctx(tmp_path, demo_templates) -> Ctx:
    return Ctx(tmp_path, demo_templates)


@pytest.mark.parametrize("case", _params())
def test_bad_input_stops_with_one_line(request, ctx, store, case, search_demo_template):
    uri, db = store
    if case.needs_demo:
        shutil.copytree(search_demo_template, ctx.tmp / ".autofusion" / "demo")
    if case.needs_ray:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
        request.getfixturevalue("ray_local")
    args, needles = case.build(ctx)
    res = invoke(uri, args)
    line = one_error_line(res)
    for n in needles:
        assert n in line, (n, line)
    assert run_count(db) == 0, "a failed search left runs in MLflow"


def test_catalogue_ids_are_unique_and_enough():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 25


def test_verbose_shows_the_traceback(ctx, store):
    uri, db = store
    args, needles = CASES[[c.id for c in CASES].index("space-low-above-high")].build(ctx)
    res = invoke(uri, args, verbose=True)
    assert res.exit_code == 2, res.output
    assert "Traceback (most recent call last)" in res.output and "autofusion.errors.ConfigError" in res.output
    last = [ln for ln in res.output.splitlines() if ln.strip()][-1]
    assert last.startswith("error: ") and needles[1] in last
    assert run_count(db) == 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # released on close: nothing listens there


@pytest.mark.slow
def test_unreachable_ray_address_fails_fast_with_one_line(tmp_path, store):
    """The installed entry point, so what reaches the real stderr is checked (Ray's C++ logs
    would bypass CliRunner's capture)."""
    uri, db = store
    address = f"127.0.0.1:{_closed_port()}"
    exe = shutil.which("autofusion") or str(Path(sys.executable).parent / "autofusion")
    t0 = time.time()
    run = subprocess.run([exe, "search", "--address", address, "--tracking-uri", uri, "--demo-samples", "48",
                          "--quiet"], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={**os.environ, "AUTOFUSION_HOME": str(tmp_path / ".autofusion")})
    elapsed = time.time() - t0
    assert run.returncode == 2, run.stderr[-3000:]
    lines = [ln for ln in (run.stdout + run.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stdout + run.stderr
    assert f"cannot reach the Ray cluster at '{address}'" in lines[0] and "ray start --head" in lines[0], lines[0]
    assert elapsed < 30, f"took {elapsed:.1f}s"
    assert run_count(db) == 0


@pytest.mark.parametrize("server", ["http", "silent"])
def test_an_address_that_is_not_a_ray_head_fails_fast(server, store):
    """A port that answers but is not Ray (a web server; a listener that never speaks) is
    named in one line within seconds; ray.init would otherwise wait minutes on it."""
    import threading
    from http.server import HTTPServer, SimpleHTTPRequestHandler

    uri, db = store
    if server == "http":
        class Quiet(SimpleHTTPRequestHandler):
            def log_message(self, *args) -> None:  # the server's own log would land in the CLI's output
                pass

        srv = HTTPServer(("127.0.0.1", 0), Quiet)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        port, stop = srv.server_address[1], srv.shutdown
    else:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port, stop = sock.getsockname()[1], sock.close
    try:
        t0 = time.time()
        res = invoke(uri, ["--address", f"127.0.0.1:{port}"])
        elapsed = time.time() - t0
    finally:
        stop()
    assert res.exit_code == 2, res.output
    line = one_error_line(res)
    assert f"--address '127.0.0.1:{port}'" in line and "not a Ray head node" in line, line
    assert elapsed < 20, f"took {elapsed:.1f}s"
    assert run_count(db) == 0
