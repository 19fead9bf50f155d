"""Atomic writes: a file the tool writes is either the old good one or the new complete one.

Every file and folder mnist-edge writes goes through `atomic_path` (or `atomic_folder`): a temporary
name beside the destination, then `os.replace`. A failed write (no space, quota, I/O error, the folder
removed meanwhile) becomes one WriteError line naming the file and the cause; the temporary file is
removed and the previous file is untouched. Writers that can only be given a path and abort the process
on a short write (torch's zip writer) must serialise to memory first and hand the bytes to write_bytes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from mnist_edge.core.errors import MnistEdgeError

TMP_SUFFIX = ".tmp"
MB = 1024 * 1024


class WriteError(MnistEdgeError):
    """A file or folder could not be written; nothing that was there before has changed."""


def _cause(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


def _tmp_prefix(dest: Path) -> str:
    # The pid in the name tells a killed run's leftovers from a concurrent run's work in progress.
    return f".{dest.name}.{os.getpid()}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_temporaries(dest: Path) -> None:
    """Remove temporary files of `dest` left by a run that was killed (its process is gone)."""
    pattern = re.compile(rf"^\.{re.escape(dest.name)}\.(\d+)\..*{re.escape(TMP_SUFFIX)}$")
    try:
        entries = list(os.scandir(dest.parent))
    except OSError:
        return
    for entry in entries:
        m = pattern.match(entry.name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                shutil.rmtree(entry.path) if entry.is_dir(follow_symlinks=False) else os.unlink(entry.path)


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(f"{folder}: cannot write here ({_cause(e)})") from None


@contextlib.contextmanager
def _replacing(dest: Path, tmp: Path) -> Iterator[None]:
    """Run the writer's block, then move tmp over dest; any failure removes tmp and names dest."""
    try:
        yield
        os.chmod(tmp, (0o777 if tmp.is_dir() else 0o666) & ~_umask())  # mkstemp/mkdtemp make 0600/0700
        if tmp.is_dir():
            _replace_folder(tmp, dest)
        else:
            os.replace(tmp, dest)
    except OSError as e:
        raise WriteError(f"{dest}: could not be written ({_cause(e)}); the previous file is unchanged") from None
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success rename it over `dest`, else remove it.

    The temporary file lives in the same folder (same filesystem), so `os.replace` is atomic.
    `suffix` keeps the real extension for writers that look at it (e.g. ".onnx").
    """
    dest = Path(dest)
    _make_folder(dest.parent)
    remove_stale_temporaries(dest)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(dest), suffix=suffix + TMP_SUFFIX, dir=dest.parent)
        os.close(fd)
    except OSError as e:
        raise WriteError(f"{dest.parent}: cannot write here ({_cause(e)})") from None
    with _replacing(dest, Path(tmp)):
        yield Path(tmp)


@contextlib.contextmanager
def atomic_folder(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside `dest`; on success it replaces `dest` (and its old content)."""
    dest = Path(dest)
    _make_folder(dest.parent)
    remove_stale_temporaries(dest)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(dest), suffix=TMP_SUFFIX, dir=dest.parent))
    except OSError as e:
        raise WriteError(f"{dest.parent}: cannot write here ({_cause(e)})") from None
    with _replacing(dest, tmp):
        yield tmp


def _replace_folder(tmp: Path, dest: Path) -> None:
    """Swap a finished folder into place: the old one is moved aside first, then removed."""
    if not dest.exists():
        os.replace(tmp, dest)
        return
    if not dest.is_dir():
        raise OSError(errno.EEXIST, "a file of that name is in the way")
    old = Path(tempfile.mkdtemp(prefix=_tmp_prefix(dest), suffix=".old" + TMP_SUFFIX, dir=dest.parent))
    os.replace(dest, old / dest.name)
    try:
        os.replace(tmp, dest)
    except OSError:
        os.replace(old / dest.name, dest)  # put the previous folder back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `dest` atomically."""
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # a full disk can surface only here; the rename must not come first


def write_text(dest: str | os.PathLike, text: str) -> None:
    """Write `text` to `dest` atomically."""
    write_bytes(dest, text.encode("utf-8"))


def write_json(dest: str | os.PathLike, obj: object) -> None:
    """Write `obj` as indented JSON to `dest` atomically."""
    write_text(dest, json.dumps(obj, indent=2) + "\n")


def write_with(dest: str | os.PathLike, writer: Callable[[Path], None], suffix: str = "") -> None:
    """Let `writer(tmp_path)` produce the file (a Python writer that raises OSError on failure), then move it."""
    with atomic_path(dest, suffix=suffix) as tmp:
        writer(tmp)


def size_of(path: str | os.PathLike) -> int:
    """Bytes of a file, or of every file in a folder (a folder format: C sources, a firmware bundle, an app)."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def ensure_writable(folder: str | os.PathLike, need_bytes: int = 0, what: str = "the output") -> Path:
    """Refuse before the work: `folder` must exist or be creatable, be writable and have room for ~need_bytes."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise WriteError(f"{folder}: not a folder")
    _make_folder(folder)
    try:
        fd, probe = tempfile.mkstemp(prefix=".mnist-edge-probe.", suffix=TMP_SUFFIX, dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise WriteError(f"{folder}: cannot write here ({_cause(e)})") from None
    free = shutil.disk_usage(folder).free
    if need_bytes and free < need_bytes:
        raise WriteError(f"{folder}: not enough free space for {what} ({free / MB:.1f} MB free, "
                         f"about {need_bytes / MB:.1f} MB needed)")
    return folder
