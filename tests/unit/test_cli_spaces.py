"""``autofusion spaces list|show|validate`` through Click's CliRunner, plus one run of the
real entry point: good files print one ``ok`` line, bad ones one ``error:`` line and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from autofusion.cli import cli
from autofusion.spaces import builtin_tasks, load_space
from autofusion.spaces.load import SPACES_DIR

TASKS = builtin_tasks()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def one_error_line(result, message: str) -> None:
    """Exit 2, nothing on stdout, exactly ``error: <message>`` on stderr, no traceback."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr == f"error: {message}\n"
    assert "Traceback" not in result.output


def test_spaces_help_names_the_commands(runner):
    result = runner.invoke(cli, ["spaces", "--help"])
    assert result.exit_code == 0
    for command in ("list", "show", "validate"):
        assert command in result.stdout


def test_list_shows_every_task(runner):
    result = runner.invoke(cli, ["spaces", "list"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == TASKS
    for task, line in zip(TASKS, lines):
        space = load_space(task)
        assert ", ".join(space.modalities) in line
        assert line.rstrip().endswith(space.file.description)


@pytest.mark.parametrize("task", TASKS)
def test_show_prints_the_file(runner, task):
    result = runner.invoke(cli, ["spaces", "show", task])
    assert result.exit_code == 0, result.output
    assert result.stdout == (SPACES_DIR / f"{task}.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(result.stdout)["task"] == task


def test_show_unknown_task(runner):
    result = runner.invoke(cli, ["spaces", "show", "image_txt"])
    one_error_line(result, f"unknown task 'image_txt'; known: {', '.join(TASKS)}")


@pytest.mark.parametrize("task", TASKS)
def test_validate_builtin_file(runner, task):
    path = SPACES_DIR / f"{task}.yaml"
    result = runner.invoke(cli, ["spaces", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.startswith(f"{path}: ok (task {task}; modalities ")
    assert len(result.stdout.splitlines()) == 1


def test_validate_a_shown_and_edited_copy(runner, tmp_path):
    """The documented workflow: show, edit, validate."""
    text = runner.invoke(cli, ["spaces", "show", "image_audio"]).stdout
    data = yaml.safe_load(text)
    data["fusion"]["choices"] = {"mid": {"dim": 32}, "gated": {}}
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    result = runner.invoke(cli, ["spaces", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"{path}: ok (task image_audio; modalities image, audio; 7 encoders, 2 fusion operators, "
        "4 losses, 4 optimizers)\n"
    )


def _edited(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load((SPACES_DIR / "image_text.yaml").read_text(encoding="utf-8"))
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


BAD_EDITS = {
    "unknown-key": (lambda d: d["fusion"]["choices"]["attention"].update(head=2),
                    "fusion.choices.attention.head: unknown parameter of fusion 'attention'; "
                    "known: dim, heads, dropout, ffn"),
    "lr-zero": (lambda d: d["optimizer"].update(lr=0), "optimizer.lr: the learning rate must be > 0, but got 0"),
    "unknown-encoder": (lambda d: d["encoders"]["image"]["choices"].update(resnet81={}),
                        "encoders.image.choices.resnet81: unknown image encoder 'resnet81'; "
                        "known: clip, efficientnet_b0, mobilenet_v3_small, pixels, resnet18, small_cnn, timm"),
    "low-above-high": (lambda d: d["head"].update(dropout={"type": "float", "low": 0.5, "high": 0.1}),
                       "head.dropout: low <= high must hold, but got (low=0.5, high=0.1)"),
}


@pytest.mark.parametrize("name", BAD_EDITS)
def test_validate_bad_file(runner, tmp_path, name):
    edit, message = BAD_EDITS[name]
    path = _edited(tmp_path, edit)
    result = runner.invoke(cli, ["spaces", "validate", str(path)])
    one_error_line(result, f"{path}: {message}")


def test_validate_bad_yaml(runner, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("task: image_text\nmodalities: {image: {size: 32}\n", encoding="utf-8")
    result = runner.invoke(cli, ["spaces", "validate", str(path)])
    one_error_line(result, f"{path}: invalid YAML: line 3, column 1: expected ',' or '}}', but got '<stream end>' "
                           "(while parsing a flow mapping that starts at line 2, column 13)")


def test_validate_missing_file(runner, tmp_path):
    path = tmp_path / "nope.yaml"
    result = runner.invoke(cli, ["spaces", "validate", str(path)])
    one_error_line(result, f"space file {str(path)!r} does not exist; check the path, or start from a built-in one: "
                           "autofusion spaces show TASK > my_space.yaml")


def test_verbose_shows_the_traceback(runner, tmp_path):
    path = _edited(tmp_path, lambda d: d["optimizer"].update(lr=0))
    result = runner.invoke(cli, ["--verbose", "spaces", "validate", str(path)])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr
    assert result.stderr.rstrip().endswith(f"error: {path}: optimizer.lr: the learning rate must be > 0, but got 0")


def test_entry_point_prints_one_line_and_exits_2(tmp_path):
    """The real process: no traceback, one line on stderr, exit status 2."""
    path = tmp_path / "broken.yaml"
    path.write_text("- not\n- a mapping\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "autofusion", "spaces", "validate", str(path)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        f"error: {path}: a space file must be a YAML mapping (task, modalities, ...), "
        "but got a list: ['not', 'a mapping']\n"
    )
