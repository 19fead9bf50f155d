"""A full disk or a read-only folder: one line, nothing lost, and found out before the work, not after.

The filesystems are small tmpfs mounts made here, which needs root (CI runs as root); elsewhere these
tests skip with the reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mnist_edge.cli import cli
from mnist_edge.core.fileio import WriteError, write_bytes

from .conftest import random_onnx_run, save_random_checkpoint


@contextlib.contextmanager
def tmpfs(where: Path, size: str, read_only: bool = False, fill_from: Path | None = None):
    """A tmpfs of `size` at `where`, holding a copy of fill_from's files; remounted read-only if asked."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (CI runs as root)")
    where.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True,
                         text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip()})")
    try:
        for f in (fill_from.iterdir() if fill_from else ()):
            shutil.copy(f, where / f.name)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _one_line_failure(res) -> str:
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output and "c10::Error" not in res.output and "terminate called" not in res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("Error: ")]
    assert len(errors) == 1, res.output
    return errors[0]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> tuple[Path, Path]:
    """(a folder with an older model.pth and model.onnx, synthetic data)."""
    return random_onnx_run(tmp_path_factory.mktemp("full"), n_test=32)


def test_a_write_into_a_full_filesystem_is_one_line_and_keeps_the_old_file(tmp_path):
    with tmpfs(tmp_path / "fs", "64k") as fs:
        (fs / "model.bin").write_bytes(b"old")
        with pytest.raises(WriteError) as e:
            write_bytes(fs / "model.bin", b"x" * 200_000)
        assert str(e.value).startswith(f"{fs / 'model.bin'}: could not be written (No space left on device)")
        assert (fs / "model.bin").read_bytes() == b"old" and [p.name for p in fs.iterdir()] == ["model.bin"]


def test_a_checkpoint_into_a_full_filesystem_is_one_line_not_an_abort(tmp_path):
    from mnist_edge.pytorch import checkpoint

    with tmpfs(tmp_path / "fs", "256k") as fs:
        with pytest.raises(WriteError, match="No space left on device"):
            save_random_checkpoint(fs / "model.pth")  # ~1.2 MB through torch's zip writer
        assert list(fs.iterdir()) == []
        assert checkpoint.CHECKPOINT_VERSION  # the process is still alive to say so


@pytest.mark.parametrize("command", ["train", "export", "bench"])
def test_a_nearly_full_folder_is_refused_at_once(small_run, tmp_path, runner, command):
    old, data = small_run
    size = sum(p.stat().st_size for p in old.iterdir()) + 300_000
    with tmpfs(tmp_path / "fs", str(size), fill_from=old) as fs:
        before = _digest(fs)
        args = {"train": ["train", "--out", str(fs), "--epochs", "1", "--threads", "1"],
                "export": ["export", "--format", "all", "--quantize", "--checkpoint", str(old / "model.pth"),
                           "--out", str(fs)],
                "bench": ["bench", "--artifacts", str(fs), "--formats", "onnx", "--min-time", "0.01"]}[command]
        res = runner.invoke(cli, [*args, "--data-dir", str(data)])
        line = _one_line_failure(res)
        assert "not enough free space" in line and str(fs) in line
        assert "epoch" not in res.output and "round" not in res.output  # refused before the work
        assert _digest(fs) == before, "an older file changed"
        assert not [p for p in fs.iterdir() if p.name.endswith(".tmp")]


def test_an_export_that_fills_the_disk_midway_is_one_line_and_keeps_the_old_files(small_run, tmp_path, runner,
                                                                                  monkeypatch):
    from mnist_edge.verify import export

    old, data = small_run
    monkeypatch.setattr(export, "ensure_writable", lambda *a, **k: None)  # as if the estimate had been wrong
    size = sum(p.stat().st_size for p in old.iterdir()) + 200_000  # not room for model.ts (375 KB)
    with tmpfs(tmp_path / "fs", str(size), fill_from=old) as fs:
        before = _digest(fs)
        res = runner.invoke(cli, ["export", "--format", "all", "--quantize", "--checkpoint", str(old / "model.pth"),
                                  "--out", str(fs), "--data-dir", str(data)])
        line = _one_line_failure(res)
        assert "No space left on device" in line and "the previous file is unchanged" in line
        assert _digest(fs) == before
        assert not [p for p in fs.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("command", ["train", "export", "bench"])
def test_a_read_only_folder_is_refused_before_any_work(small_run, tmp_path, runner, command):
    old, data = small_run
    with tmpfs(tmp_path / "ro", "4m", read_only=True, fill_from=old) as ro:
        args = {"train": ["train", "--out", str(ro), "--epochs", "1", "--threads", "1"],
                "export": ["export", "--format", "onnx", "--checkpoint", str(old / "model.pth"), "--out", str(ro)],
                "bench": ["bench", "--artifacts", str(ro), "--formats", "onnx", "--min-time", "0.01"]}[command]
        res = runner.invoke(cli, [*args, "--data-dir", str(data)])
        line = _one_line_failure(res)
        assert line == f"Error: {ro}: cannot write here (Read-only file system)"
        assert "epoch" not in res.output and "round" not in res.output and "loaded in" not in res.output
