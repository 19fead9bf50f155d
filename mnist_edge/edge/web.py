"""The browser app's pieces, shared by `serve` and `export --format web`: one page, one config, one manifest.

The page (static/index.html, style.css, app.js, worker.js, preprocess.js) reads config.json beside it:
    {"mode": "local" | "server",          local: no server to fall back to (the web export)
     "model": {"url", "name", "format", "size_bytes"} | null,      null: the browser cannot run it
     "ort": {"module", "loader", "wasm"} | null,                    onnxruntime-web's three files
     "metadata": {...ModelMetadata...},   mean/std, class_names, test_acc
     "service_worker": "sw.js" | null}
URLs are relative to config.json. onnxruntime-web's files are vendored into static/ort/ by `make
web-vendor` (web/fetch_ort.py checks them against web/ort-files.sha256); a pip install without them
still serves, and the page then asks POST /predict.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from mnist_edge.core.metadata import ModelMetadata

STATIC = Path(__file__).resolve().parent / "static"
PAGE_FILES = ("index.html", "style.css", "app.js", "worker.js", "preprocess.js")
SERVICE_WORKER = "sw.js"  # a template: the exporter puts the precache list in front of it
ORT_DIR = "ort"
VENDORED = STATIC / ORT_DIR  # filled by `make web-vendor`
ORT_ROLES = {"module": "ort.wasm.min.mjs", "loader": "ort-wasm-simd-threaded.mjs",
             "wasm": "ort-wasm-simd-threaded.wasm"}
ICON_SIZES = (192, 512)
APP_NAME = "mnist-edge: draw a digit"
THEME = "#2563eb"  # the page's --accent
BACKGROUND = "#f4f5f7"  # the page's --bg


def browser_formats() -> tuple[str, ...]:
    """What onnxruntime-web runs as it is: the formats the browser app's rows (web runtime) are made from."""
    from mnist_edge.core.formats import FORMATS

    web_loader = "mnist_edge.edge.runtimes.web:"
    return tuple(dict.fromkeys(f.source for f in FORMATS.values() if f.loader.startswith(web_loader) and f.source))


def ort_files() -> dict[str, Path]:
    """{file name: path} of onnxruntime-web's vendored files."""
    return {name: VENDORED / name for name in ORT_ROLES.values()}


def vendoring_problem() -> str | None:
    """None when onnxruntime-web is vendored, else one line saying what is missing and how to get it."""
    missing = [p for p in ort_files().values() if not p.is_file()]
    if not missing:
        return None
    return f"onnxruntime-web is not vendored ({missing[0]} is missing): run `make web-vendor`"


def ort_urls(prefix: str = ORT_DIR) -> dict[str, str]:
    return {role: f"{prefix}/{name}" for role, name in ORT_ROLES.items()}


def config(mode: str, meta: ModelMetadata, model: Path | None, model_format: str | None,
           ort: dict[str, str] | None, service_worker: str | None) -> dict:
    """config.json's content (see the module docstring); the model is served under its own file name."""
    offered = None
    if model is not None:
        offered = {"url": model.name, "name": model.name, "format": model_format, "size_bytes": model.stat().st_size}
    return {"mode": mode, "model": offered, "ort": ort, "metadata": meta.to_dict(), "service_worker": service_worker}


def manifest() -> dict:
    """The web app manifest: what a phone needs to put the app on its home screen."""
    icons = [{"src": f"icons/icon-{s}.png", "sizes": f"{s}x{s}", "type": "image/png", "purpose": purpose}
             for s in ICON_SIZES for purpose in ("any", "maskable")]  # full-bleed art: fit for both
    return {"name": APP_NAME, "short_name": "mnist-edge", "start_url": "./", "scope": "./",
            "display": "standalone", "background_color": BACKGROUND, "theme_color": THEME, "icons": icons}


def icon_png(size: int) -> bytes:
    """A square app icon: a hand-drawn 7 on the accent colour, within the middle 60% (safe for masking)."""
    from PIL import Image, ImageDraw

    scale = 4  # drawn large, then reduced: smooth edges
    side = size * scale
    img = Image.new("RGB", (side, side), THEME)
    pts = [(0.32, 0.32), (0.68, 0.32), (0.45, 0.70)]
    ImageDraw.Draw(img).line([(x * side, y * side) for x, y in pts], fill="white",
                             width=round(0.09 * side), joint="curve")
    buf = io.BytesIO()
    img.resize((size, size), Image.Resampling.LANCZOS).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def icons() -> dict[str, bytes]:
    """{URL path: PNG bytes} of the manifest's icons."""
    return {f"icons/icon-{s}.png": icon_png(s) for s in ICON_SIZES}


def service_worker(files: list[str], version: str) -> str:
    """sw.js: static/sw.js after the list of files it precaches and the app's version."""
    head = f"const PRECACHE = {json.dumps({'version': version, 'files': files})};\n"
    return head + (STATIC / SERVICE_WORKER).read_text(encoding="utf-8")
