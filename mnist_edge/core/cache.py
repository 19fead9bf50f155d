"""Results that follow from file contents alone, remembered beside the artifacts so that a re-run skips them.

`mnist-edge check` scores every format on the whole test set, and so does `mnist-edge bench`: for most
formats that is a second or two, for TFLM's reference kernels (6 ms an image) a minute. check writes
what it measured here; bench reads it back when the key matches and measures only what is missing.

A key is the SHA-256 of everything the result depends on: the model's bytes (every file of a folder
format), the loader's source, the installed versions of the packages that run models, and the exact
inputs and labels. A changed model, test set, loader or package is a new key, so an entry is never
stale, only unused. Entries are small JSON files in FOLDER/.cache/, written atomically; a missing,
unreadable or corrupt entry is a miss, and a folder that cannot be written only means nothing is kept.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from mnist_edge.core.fileio import WriteError, write_json

CACHE_FOLDER = ".cache"


def content_key(*parts: object) -> str:
    """SHA-256 over the parts in order: Paths by content (a folder: its files' relative names and
    bytes, sorted), numpy arrays by dtype, shape and bytes, anything else by its JSON form."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            files = sorted(p for p in part.rglob("*") if p.is_file()) if part.is_dir() else [part]
            for f in files:
                h.update(f.relative_to(part).as_posix().encode() if part.is_dir() else b"file")
                h.update(f.read_bytes())
        elif isinstance(part, np.ndarray):
            h.update(f"{part.dtype.str}{part.shape}".encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def _entry(folder: Path, kind: str, key: str) -> Path:
    return Path(folder) / CACHE_FOLDER / f"{kind}-{key[:32]}.json"


def recall(folder: Path, kind: str, key: str) -> dict | None:
    """The value remembered under `key`, or None."""
    try:
        entry = json.loads(_entry(folder, kind, key).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("key") != key or not isinstance(entry.get("value"), dict):
        return None
    return entry["value"]


def remember(folder: Path, kind: str, key: str, value: dict) -> None:
    """Keep `value` under `key`; best effort (a read-only or full folder keeps nothing, and says nothing)."""
    try:
        write_json(_entry(folder, kind, key), {"key": key, "value": value})
    except (OSError, WriteError):
        pass


def accuracy_key(model: Path, loader: str, inputs: np.ndarray, labels: np.ndarray) -> str:
    """The key of a model's test-set accuracy: what check measures and bench reuses."""
    import importlib.util

    from mnist_edge import __version__
    from mnist_edge.core.metadata import package_versions

    spec = importlib.util.find_spec(loader.split(":", 1)[0])  # "package.module:function"
    source = Path(spec.origin) if spec and spec.origin else loader
    return content_key(Path(model), source, __version__, package_versions(installed=True), inputs, labels)
