"""The `web` folder's model under ONNX Runtime: `check` and `bench` prove the very file the browser is sent.

onnxruntime-web itself is held to Python's ONNX Runtime by tests/test_web.py (in Node, on all 10,000
MNIST test images): same bits for int8, fp32 within the fp32 bar.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from mnist_edge.core.errors import ModelFileError
from mnist_edge.core.formats import Format
from mnist_edge.edge.runtimes import onnx

CONFIG = "config.json"


def model_file(folder: Path) -> Path:
    """The ONNX file that the app's config.json names, refusing anything but a file inside the folder."""
    try:
        url = json.loads((folder / CONFIG).read_text(encoding="utf-8"))["model"]["url"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        why = f"no readable {CONFIG}: {type(e).__name__}"
        raise ModelFileError(f"{folder}: not an mnist-edge web app ({why})") from None
    if not isinstance(url, str) or "/" in url or "\\" in url or url in ("", ".", ".."):
        raise ModelFileError(f"{folder / CONFIG}: the model url {url!r} is not a file in the app's folder")
    if not (folder / url).is_file():
        raise ModelFileError(f"{folder / url}: no such model file (named by {CONFIG})")
    return folder / url


def load(path: Path, fmt: Format, threads: int | None = None) -> onnx.OnnxRuntime:
    rt = onnx.load(model_file(path), fmt, threads)
    return dataclasses.replace(rt, path=path)  # the format's "file" is the folder
