"""Safe defaults: the UI stays on localhost unless told, space files are plain YAML (no
Python tags), checkpoints load as weights only, and no configuration value is run as code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from autofusion.cli import cli, ui_command
from autofusion.lazy import LazyImport
from autofusion.search.evaluate import load_trial_model
from autofusion.search.records import TrialRecord
from tests.helpers import fake_data, flat_config
from tests.reliability.common import SPACES, one_error_line, run_count

PACKAGE = Path(__file__).resolve().parents[2] / "autofusion"
LAZY = PACKAGE / "lazy.py"


# ------------------------------------------------------------------ the UI binds to localhost


def test_ui_command_binds_the_given_host():
    cmd = ui_command("sqlite:///mlruns/mlflow.db", "127.0.0.1", 5000)
    assert cmd[:4] == [sys.executable, "-m", "mlflow", "ui"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "5000"
    assert cmd[cmd.index("--backend-store-uri") + 1] == "sqlite:///mlruns/mlflow.db"


@pytest.mark.parametrize("flags,host", [([], "127.0.0.1"), (["--host", "0.0.0.0"], "0.0.0.0")],
                         ids=["default-localhost", "explicit-host"])
def test_ui_binds_localhost_unless_told(monkeypatch, store, flags, host):
    uri, _ = store
    ran: list[list[str]] = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, *a, **k: ran.append(cmd) or 0)
    res = CliRunner().invoke(cli, ["ui", "--tracking-uri", uri, *flags])
    assert res.exit_code == 0, res.output
    assert ran == [ui_command(uri, host, 5000)]


# ------------------------------------------------------------------ YAML is loaded safely


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system", "!!python/object:builtins.object",
                                 "!!python/name:os.system"])
def test_python_tags_in_a_space_file_are_rejected(tmp_path, store, tag):
    marker = tmp_path / "pwned"
    text = (SPACES / "image_text.yaml").read_text()
    path = tmp_path / "space.yaml"
    path.write_text(text.replace("task: image_text", f"task: {tag} ['touch {marker}']", 1))
    uri, db = store
    for args in (["search", "--space", str(path), "--tracking-uri", uri, "--quiet"],
                 ["spaces", "validate", str(path)]):
        line = one_error_line(CliRunner().invoke(cli, args))
        assert f"{path}: invalid YAML: line 5, column 7: could not determine a constructor for the tag" in line
        assert "a space file holds plain values only: remove the tag" in line
    assert not marker.exists()
    assert run_count(db) == 0


# ------------------------------------------------------------------ checkpoints load weights only


class _Payload:
    """Unpickling this runs code (here: writes a file) unless the loader refuses globals."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_a_checkpoint_with_code_in_it_is_refused(tmp_path):
    """The function the search uses to load its best trial's checkpoint refuses a pickle that
    would run code (``torch.load(..., weights_only=True)``)."""
    import pickle

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    torch.save({"weight": _Payload(marker)}, ckpt / "model.pt")
    data = fake_data(["image", "text"])
    rec = TrialRecord("t1", 1, flat_config(["image", "text"], {"image": "small_cnn", "text": "embedding_bag"}, "mid"),
                      planned_epochs=1)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_trial_model(ckpt, rec, data)
    assert not marker.exists()


# ------------------------------------------------------------------ nothing is evaluated as code


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else (
                f"{f.value.id}.{f.attr}" if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else None)
            yield name, node


def _kw(node: ast.Call, name: str):
    return next((k.value for k in node.keywords if k.arg == name), None)


def test_package_source_has_no_code_evaluation_or_unsafe_loading():
    """No eval/exec/compile, no unsafe YAML or pickle loading, no shell=True, and every
    torch.load passes weights_only=True, anywhere in the package."""
    problems = []
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20
    for path in files:
        for name, node in _calls(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
            if name in ("eval", "exec", "compile", "__import__", "importlib.import_module"):
                if not (name == "importlib.import_module" and path == LAZY):  # see the next test
                    problems.append(f"{where}: {name}()")
            elif name in ("yaml.load", "yaml.load_all", "yaml.full_load", "yaml.full_load_all", "yaml.unsafe_load",
                          "yaml.unsafe_load_all", "pickle.load", "pickle.loads", "cloudpickle.load",
                          "cloudpickle.loads", "dill.load", "dill.loads", "os.system", "os.popen"):
                problems.append(f"{where}: {name}()")
            elif name in ("yaml.compose", "yaml.compose_all", "yaml.parse"):
                loader = _kw(node, "Loader")
                if not (isinstance(loader, ast.Attribute) and loader.attr in ("SafeLoader", "CSafeLoader")):
                    problems.append(f"{where}: {name}() without Loader=yaml.SafeLoader")
            elif name == "torch.load":
                wo = _kw(node, "weights_only")
                if not (isinstance(wo, ast.Constant) and wo.value is True):
                    problems.append(f"{where}: torch.load() without weights_only=True")
            shell = _kw(node, "shell")
            if isinstance(shell, ast.Constant) and shell.value is True:
                problems.append(f"{where}: shell=True")
    assert problems == []


def test_the_one_dynamic_import_takes_constant_autofusion_module_names():
    """autofusion/lazy.py's ``LazyImport`` imports by name; every use names one of the
    package's own modules as a literal, so no input can choose what is imported."""
    uses = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for name, node in _calls(ast.parse(path.read_text(encoding="utf-8"))):
            if name == "LazyImport" and path != LAZY:
                arg = node.args[0] if len(node.args) == 1 and not node.keywords else None
                module = arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None
                where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
                target = PACKAGE.parent / (module or "").replace(".", "/")
                assert module and module.startswith("autofusion.") and (
                    target.with_suffix(".py").is_file() or (target / "__init__.py").is_file()), where
                uses.append(where)
    assert uses  # the check looks at something
    with pytest.raises(ValueError, match="LazyImport takes one of autofusion's own modules, but got 'os'"):
        LazyImport("os")


@pytest.mark.parametrize("edit,needle", [
    (("optimizer", "lr", "__import__('os').system('touch {marker}')"), "optimizer.lr: expected float, but got"),
    (("encoders", "image", "choices", "__import__('os').system('touch {marker}')"), "unknown image encoder"),
    (("search", "metric", "__import__('os').system('touch {marker}') or 'val_accuracy'"),
     "search.metric: unknown metric"),
], ids=["as-a-value", "as-a-name", "as-a-setting"])
def test_code_in_a_space_file_is_a_plain_string(tmp_path, store, edit, needle):
    marker = tmp_path / "pwned"
    doc = yaml.safe_load((SPACES / "image_text.yaml").read_text())
    *keys, code = edit
    code = code.format(marker=marker)
    d = doc
    for k in keys[:-1]:
        d = d[k]
    if keys[-1] == "choices":
        d["choices"][code] = {}
    else:
        d[keys[-1]] = code
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    uri, db = store
    line = one_error_line(CliRunner().invoke(cli, ["search", "--space", str(path), "--tracking-uri", uri, "--quiet"]))
    assert needle in line and "__import__" in line
    assert not marker.exists()
    assert run_count(db) == 0
