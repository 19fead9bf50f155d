"""Atomic writes: a file the tool writes is either the old good one or the new complete one."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import MnistEdgeError


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success rename it over `dest`, else remove it.

    The temporary file lives in the same folder (same filesystem), so `os.replace` is atomic.
    `suffix` keeps the real extension for writers that look at it (e.g. ".onnx").
    """
    dest = Path(dest)
    folder = dest.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix + ".tmp", dir=folder)
        os.close(fd)
    except OSError as e:
        raise MnistEdgeError(f"{folder}: cannot write here ({e.strerror or e})") from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `dest` atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def write_text(dest: str | os.PathLike, text: str) -> None:
    """Write `text` to `dest` atomically."""
    write_bytes(dest, text.encode("utf-8"))


def write_json(dest: str | os.PathLike, obj: object) -> None:
    """Write `obj` as indented JSON to `dest` atomically."""
    write_text(dest, json.dumps(obj, indent=2) + "\n")


def write_with(dest: str | os.PathLike, writer: Callable[[Path], None], suffix: str = "") -> None:
    """Let `writer(tmp_path)` produce the file, then move it into place atomically."""
    with atomic_path(dest, suffix=suffix) as tmp:
        writer(tmp)
