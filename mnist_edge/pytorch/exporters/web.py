"""The `web` export: a static folder that runs the model in the visitor's browser, offline after one visit.

The folder holds the drawing page (the same files `mnist-edge serve` serves, from edge/static/),
onnxruntime-web's wasm backend (ort/, vendored by `make web-vendor`), the verified ONNX model it is
made from (int8 for `web`: 3.4x smaller than fp32 and held to the int8 parity bars), config.json
(where everything is, and the model's metadata), a web app manifest with icons, and sw.js, a service
worker that caches it all on the first visit. Any static server will do: `python3 -m http.server -d
artifacts/web`. Torch-free: it only copies and writes files.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from mnist_edge.core.errors import ExportError
from mnist_edge.core.formats import FORMATS, Format
from mnist_edge.core.metadata import ModelMetadata
from mnist_edge.edge import web
from mnist_edge.edge.runtimes import onnx as onnx_runtime


def export(job, fmt: Format, tmp: Path) -> ModelMetadata:
    """Write the app into the empty folder `tmp`, from the verified ONNX file of `fmt.source`."""
    problem = web.vendoring_problem()
    if problem:
        raise ExportError(f"{job.settings.out / fmt.filename}: not written, {problem}")
    model = job.sources[fmt.source]
    meta = onnx_runtime.load(model, FORMATS[fmt.source]).metadata  # what the model file itself says
    write_app(tmp, model, fmt.source, meta)
    return meta


def write_app(root: Path, model: Path, model_format: str, meta: ModelMetadata) -> list[str]:
    """The app's files in `root`; returns their paths relative to it."""
    for name in web.PAGE_FILES:
        shutil.copyfile(web.STATIC / name, root / name)
    (root / web.ORT_DIR).mkdir()
    for name, path in web.ort_files().items():
        shutil.copyfile(path, root / web.ORT_DIR / name)
    shutil.copyfile(model, root / model.name)
    (root / "icons").mkdir()
    for path, png in web.icons().items():
        (root / path).write_bytes(png)
    _write_json(root / "manifest.webmanifest", web.manifest())
    _write_json(root / "config.json", web.config("local", meta, root / model.name, model_format, web.ort_urls(),
                                                 web.SERVICE_WORKER))
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    # "./" too: the app is opened at its folder's URL, which a static server answers with index.html.
    sw = web.service_worker(["./", *files], _version(root, files))
    (root / web.SERVICE_WORKER).write_text(sw, encoding="utf-8")
    return [*files, web.SERVICE_WORKER]


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def _version(root: Path, files: list[str]) -> str:
    """A digest of every file's name and bytes: changes whenever anything in the app does."""
    h = hashlib.sha256()
    for name in files:
        h.update(name.encode() + b"\0" + (root / name).read_bytes())
    return h.hexdigest()[:16]
