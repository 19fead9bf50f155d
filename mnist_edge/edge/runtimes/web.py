"""The `web` folder's model as the browser runs it: onnxruntime-web's wasm in Node, where node is installed.

`check` and `bench` then prove what the page computes (the app's own onnxruntime-web files on its own
model file). Without node the same file runs under Python's ONNX Runtime, and the runtime says so
(`engine`): its int8 results are then those of this CPU's ONNX Runtime kernels, not the browser's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import struct
import subprocess
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnist_edge.core.errors import ModelFileError, first_line
from mnist_edge.core.formats import Format, Runtime
from mnist_edge.core.metadata import ModelMetadata
from mnist_edge.edge.runtimes import onnx

CONFIG = "config.json"
NODE_SCRIPT = Path(__file__).resolve().parent.parent / "node" / "ort_web.mjs"
ENGINE_NODE = "onnxruntime-web (wasm) in Node"
ENGINE_PYTHON = "Python's ONNX Runtime on the same file (node not found)"


def _config(folder: Path) -> dict:
    try:
        return json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelFileError(f"{folder}: not an mnist-edge web app "
                             f"(no readable {CONFIG}: {type(e).__name__})") from None


def _inside(folder: Path, url: object, what: str) -> Path:
    """A URL of config.json as a file inside the app's folder, refusing anything else."""
    bad = not isinstance(url, str) or url in ("", ".") or "\\" in url or url.startswith("/")
    if bad or ".." in url.split("/"):
        raise ModelFileError(f"{folder / CONFIG}: the {what} url {url!r} is not a file in the app's folder")
    if not (folder / url).is_file():
        raise ModelFileError(f"{folder / url}: no such file (the {what}, named by {CONFIG})")
    return folder / url


def model_file(folder: Path) -> Path:
    """The ONNX file that the app's config.json names, refusing anything but a file inside the folder."""
    try:
        url = _config(folder)["model"]["url"]
    except (KeyError, TypeError) as e:
        raise ModelFileError(f"{folder}: not an mnist-edge web app "
                             f"(no readable {CONFIG}: {type(e).__name__})") from None
    if isinstance(url, str) and "/" in url:
        raise ModelFileError(f"{folder / CONFIG}: the model url {url!r} is not a file in the app's folder")
    return _inside(folder, url, "model")


def ort_files(folder: Path) -> list[Path] | None:
    """The app's own onnxruntime-web files (module, loader, wasm), or None where it ships none."""
    ort = _config(folder).get("ort")
    if not isinstance(ort, dict):
        return None
    return [_inside(folder, ort.get(role), f"onnxruntime-web {role}") for role in ("module", "loader", "wasm")]


@dataclass
class NodeWebRuntime(Runtime):
    """One Node process running the app's model with its onnxruntime-web; requests over stdin/stdout."""

    format: str
    path: Path
    metadata: ModelMetadata
    model: Path
    engine: str = ENGINE_NODE
    _proc: subprocess.Popen | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _start(self) -> subprocess.Popen:
        module, loader, wasm = ort_files(self.path)
        cmd = [shutil.which("node") or "node", str(NODE_SCRIPT), str(self.model), str(module), str(loader), str(wasm),
               json.dumps(list(self.metadata.input_shape))]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        weakref.finalize(self, _stop, proc)
        return proc

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        k = len(self.metadata.class_names)
        if len(x) == 0:
            return np.zeros((0, k), np.float32)
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
            want = len(x) * k * 4
            try:
                self._proc.stdin.write(struct.pack("<I", len(x)) + x.tobytes())
                self._proc.stdin.flush()
                data = self._proc.stdout.read(want)
            except OSError:
                data = b""
            if len(data) != want:
                err = self._proc.stderr.read().decode("utf-8", "replace") if self._proc.poll() is not None else ""
                last = err.strip().splitlines()[-1] if err.strip() else "no output"
                raise ModelFileError(f"{self.model}: onnxruntime-web in Node failed ({first_line(last, 160)})")
        return np.frombuffer(data, np.float32).reshape(len(x), k).copy()


def _stop(proc: subprocess.Popen) -> None:
    try:
        proc.stdin.close()
        proc.wait(timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()


def node_available() -> bool:
    return shutil.which("node") is not None and os.environ.get("MNIST_EDGE_WEB_ENGINE") != "python"


def load(path: Path, fmt: Format, threads: int | None = None):
    """The app's model under onnxruntime-web in Node where node and the app's ort files are there, else Python's ORT."""
    model = model_file(path)
    rt = onnx.load(model, fmt, threads)  # also checks that the file is a readable mnist-edge ONNX model
    files = ort_files(path)
    if node_available() and files:
        return NodeWebRuntime(fmt.name, path, rt.metadata, model)
    return dataclasses.replace(rt, path=path, engine=ENGINE_PYTHON)  # the format's "file" is the folder
