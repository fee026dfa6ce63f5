"""autofusion doctor: each check's failure row says what is wrong and how to fix it, one
check never stops the others (a crash or a hang in a child process is one failed row), and
on this machine everything is green."""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import time
from collections import namedtuple
from pathlib import Path

import pytest
from click.testing import CliRunner

from autofusion import doctor
from autofusion.cli import cli
from autofusion.doctor import FAIL, OK, WARN, Check, DoctorOptions, Row


def _check(name: str) -> Check:
    return next(c for c in doctor.CHECKS if c.name == name)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Checks for the isolation tests: module-level, so a child process can import them.
def crashes(opts: DoctorOptions) -> Row:
    os.abort()


def hangs(opts: DoctorOptions) -> Row:
    time.sleep(120)
    return Row("hangs", OK, "woke up")


def raises(opts: DoctorOptions) -> Row:
    raise OSError("libbroken.so: undefined symbol: _ZN3c10")


def works(opts: DoctorOptions) -> Row:
    return Row("works", OK, f"ran in process {os.getpid()}")


def test_the_whole_doctor_is_green_here_and_takes_seconds(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    t0 = time.time()
    res = CliRunner().invoke(cli, ["doctor", "--tracking-uri", f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"])
    took = time.time() - t0
    assert res.exit_code == 0, res.output
    for name in ("torch", "torchvision", "torchaudio", "soundfile", "PyAV", "accelerators", "Ray (local)",
                 "MLflow store", "disk", "weights: HF hub", "weights: torch hub"):
        assert name in res.output
    assert "nms runs" in res.output and "MelSpectrogram runs" in res.output and "ran a task" in res.output
    assert "checks passed" in res.output and "FAIL" not in res.output
    assert "Ray cluster" not in res.output  # no --address, no RAY_ADDRESS: nothing to join
    assert took < 90, took  # ~11 s on two busy cores; each check has its own time limit


def test_a_crash_a_hang_and_an_exception_are_one_row_each_and_the_rest_still_run():
    checks = [
        Check("crashes", crashes, 30, "g", lambda: "reinstall it"),
        Check("hangs", hangs, 2, "g"),
        Check("raises", raises, 30, "g", lambda: doctor.reinstall_command("torchaudio")),
        Check("works", works, 30, "g"),
        Check("here", works, 30, None),
    ]
    t0 = time.time()
    rows = {r.check: r for r in doctor.run_checks(DoctorOptions(), checks)}
    assert time.time() - t0 < 60
    assert list(rows) == ["crashes", "hangs", "raises", "works", "here"]
    assert rows["crashes"].status == FAIL and "crashed its process (signal SIGABRT)" in rows["crashes"].found
    assert rows["crashes"].fix == "reinstall it"
    assert rows["hangs"].status == FAIL and "did not finish within 2 s" in rows["hangs"].found
    assert rows["raises"].status == FAIL and "undefined symbol" in rows["raises"].found
    assert "install -c" in rows["raises"].fix and "requirements.lock" in rows["raises"].fix
    assert rows["works"].status == OK and str(os.getpid()) not in rows["works"].found  # in a child process
    assert rows["here"].status == OK and str(os.getpid()) in rows["here"].found


def test_a_broken_compiled_library_is_a_failed_row_with_the_reinstall_command(tmp_path, monkeypatch):
    fake = tmp_path / "shadow" / "torchaudio"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise OSError('libtorchaudio.so: undefined symbol: _ZN5torch3jit')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "shadow"))  # the child process imports what this one would
    rows = doctor.run_checks(DoctorOptions(), [_check("torchaudio"), _check("soundfile")])
    assert rows[0].status == FAIL and "undefined symbol" in rows[0].found
    assert "install -c" in rows[0].fix and "requirements.lock" in rows[0].fix and "torchaudio" in rows[0].fix
    assert rows[1].status == OK  # the next check in the same child still ran


def test_a_store_that_cannot_be_created_is_a_failed_row(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    uri = f"sqlite:///{tmp_path / 'afile' / 'mlruns' / 'mlflow.db'}"
    row = doctor.run_one(_check("MLflow store"), DoctorOptions(tracking_uri=uri))
    assert row.status == FAIL and "is a file, not a folder" in row.found
    assert "--tracking-uri" in row.fix


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permissions")
def test_a_read_only_store_is_a_failed_row(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        row = doctor.run_one(_check("MLflow store"), DoctorOptions(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}"))
    finally:
        folder.chmod(0o755)
    assert row.status == FAIL and "--tracking-uri" in row.fix


def test_an_unreachable_tracking_server_is_a_failed_row():
    row = doctor.run_one(_check("MLflow store"), DoctorOptions(tracking_uri=f"http://127.0.0.1:{_closed_port()}"))
    assert row.status == FAIL and "unreachable" in row.found and "another --tracking-uri" in row.fix


def test_an_existing_store_is_reached(tmp_path):
    from autofusion import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.check_store(uri)
    row = doctor.run_one(_check("MLflow store"), DoctorOptions(tracking_uri=uri))
    assert row.status == OK and "reachable and writable" in row.found


def test_a_new_store_is_not_created_by_the_doctor(tmp_path):
    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    row = doctor.run_one(_check("MLflow store"), DoctorOptions(tracking_uri=uri))
    assert row.status == OK and "not created yet" in row.found and not (tmp_path / "new").exists()


def test_a_ray_address_that_does_not_answer_is_a_failed_row_in_seconds():
    port = _closed_port()
    t0 = time.time()
    rows = doctor.run_checks(DoctorOptions(address=f"127.0.0.1:{port}"), [_check("Ray cluster")])
    assert time.time() - t0 < 30
    assert len(rows) == 1 and rows[0].status == FAIL
    assert "cannot reach the Ray cluster" in rows[0].found and f"ray start --head --port {port}" in rows[0].fix


def test_the_cluster_row_appears_only_when_there_is_an_address(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert not doctor.run_checks(DoctorOptions(), [_check("Ray cluster")])
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{_closed_port()}")  # a search would join it: so does the doctor
    rows = doctor.run_checks(DoctorOptions(), [_check("Ray cluster")])
    assert rows[0].status == FAIL and "unset RAY_ADDRESS" in rows[0].fix


Usage = namedtuple("Usage", "total used free")


def test_low_disk_space_fails_and_says_where(monkeypatch, tmp_path):
    monkeypatch.setenv("AUTOFUSION_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(100 * 1024**3, 99.5 * 1024**3, 0.5 * 1024**3))
    row = doctor.check_disk(DoctorOptions())
    assert row.status == FAIL and str(tmp_path / "home") in row.found and "AUTOFUSION_HOME" in row.fix
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(100 * 1024**3, 97 * 1024**3, 3 * 1024**3))
    assert doctor.check_disk(DoctorOptions()).status == WARN


def test_weight_caches_are_counted_once_per_file(monkeypatch, tmp_path):
    hub = tmp_path / "hf" / "hub"
    model = hub / "models--google--tiny-bert"
    (model / "blobs").mkdir(parents=True)
    (model / "blobs" / "abc").write_bytes(b"x" * 2048)
    (model / "snapshots" / "rev").mkdir(parents=True)
    (model / "snapshots" / "rev" / "model.safetensors").symlink_to(model / "blobs" / "abc")
    ckpts = tmp_path / "torch" / "hub" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "resnet18-f37072fd.pth").write_bytes(b"y" * 4096)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hf = doctor.check_hf_cache(DoctorOptions())
    assert "1 model(s), 2.0 KiB" in hf.found and "google/tiny-bert" in hf.found
    th = doctor.check_torch_hub_cache(DoctorOptions())
    assert "1 checkpoint(s), 4.0 KiB" in th.found and "resnet18-f37072fd.pth" in th.found
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))  # wins over HF_HOME, as in huggingface_hub
    assert "does not exist" in doctor.check_hf_cache(DoctorOptions()).found


def test_a_failed_check_makes_the_command_exit_1_with_the_fix_in_the_table(monkeypatch):
    rows = [Row("torch", OK, "fine"), Row("torchaudio", FAIL, "OSError: undefined symbol", "pip install -c x -e .")]
    command_module = importlib.import_module("autofusion.cli.doctor")  # the package exports the command by that name
    monkeypatch.setattr(command_module, "run_checks", lambda opts: rows)
    res = CliRunner().invoke(cli, ["doctor"])
    assert res.exit_code == 1
    assert "pip install -c x -e ." in res.output and "1 of 2 checks failed (torchaudio)" in res.output


def test_the_reinstall_command_uses_the_lock():
    cmd = doctor.reinstall_command("torch")
    assert "install -c" in cmd and "requirements.lock" in cmd
    assert cmd.split()[0].endswith("pip")
    assert doctor.locked_version("torch") == doctor.installed_version("torch").split("+")[0]


def test_lock_version_of_a_package_with_markers_is_this_pythons():
    assert doctor.locked_version("av") == doctor.installed_version("av")
    assert doctor.locked_version("no-such-package") is None


def test_home_defaults_to_dot_autofusion(monkeypatch, tmp_path):
    monkeypatch.delenv("AUTOFUSION_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert doctor.autofusion_home() == Path(tmp_path / ".autofusion").resolve()
