"""`mnist-edge serve`: the predict path over HTTP (FastAPI + uvicorn), and a page to draw digits on.

Endpoints: POST /predict (an image as the raw body, or a multipart upload in field `file`), GET /healthz,
GET /model, and the drawing page (the same files `export --format web` writes, from the package; no
external resources): / and its files, /config.json (mode "server"), the served model's file when the
browser can run it (ONNX), onnxruntime-web under /ort/ when vendored, the manifest and icons. The page
runs the model in the browser where it can, else it POSTs /predict. Every error is JSON
`{"error": "..."}` with its status. The same `preprocess` and `predict_arrays` as the CLI do the work;
with an ONNX model the server process never imports torch. fastapi and uvicorn (the `serve` extra) are
imported inside the functions, so importing this module, and the CLI's --help, stay light.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations at runtime,
# and they name classes imported inside create_app.

import json
import logging
import os
import time
from pathlib import Path

from mnist_edge.core.deps import require
from mnist_edge.core.errors import ImageError
from mnist_edge.core.settings import ServeSettings
from mnist_edge.edge import web

MAX_BODY_BYTES = ServeSettings.max_body_bytes
# Settings for the worker processes of `--workers N` (uvicorn imports the app factory by name there).
ENV_MODEL = "MNIST_EDGE_SERVE_MODEL"
ENV_MAX_BODY = "MNIST_EDGE_SERVE_MAX_BODY_BYTES"
RAW_NAME = "<body>"  # what error messages call an image sent as the raw request body
# The page may only run its own files (and compile onnxruntime-web's wasm), talk to this server and
# show blobs it made itself (the uploaded file's preview). index.html carries the same policy as a
# <meta>, for static hosts; frame-ancestors only works as a header.
PAGE_CSP = ("default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; style-src 'self'; "
            "img-src 'self' blob:; connect-src 'self'; manifest-src 'self'; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    # COOP + COEP make the page cross-origin isolated: SharedArrayBuffer, so the wasm may use threads.
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cache-Control": "no-cache",  # revalidate: a new model or page is seen on the next load
    "X-Content-Type-Options": "nosniff",
}
# Explicit, not mimetypes' guess: module scripts must be JavaScript and the wasm application/wasm
# (streaming compilation), whatever the device's /etc/mime.types says.
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
               ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
               ".json": "application/json", ".webmanifest": "application/manifest+json",
               ".wasm": "application/wasm", ".onnx": "application/octet-stream", ".png": "image/png"}

log = logging.getLogger("mnist_edge.serve")


class BodyTooLarge(Exception):
    """The request body passed max_body_bytes while it was being read."""


def image_error_status(e: ImageError) -> int:
    """The HTTP status of an image preprocess refused: 413 too many pixels, 415 not a format we read, else 400.

    A decompression bomb is small on the wire but huge decoded: 413, like a body over the limit, since
    in both cases the client has to send something smaller.
    """
    return {"too_large": 413, "unsupported": 415}.get(e.kind, 400)  # 400: empty, corrupt, truncated


def _limited_receive(receive, limit: int):
    """An ASGI receive that raises BodyTooLarge once more than `limit` body bytes have arrived."""
    seen = 0

    async def wrapped():
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge()
        return message

    return wrapped


def _upload_name(filename: str | None) -> str:
    """A client-supplied file name, safe to put in a one-line message."""
    name = os.path.basename((filename or "").replace("\\", "/"))
    name = "".join(c for c in name if c.isprintable())[:100]
    return name or "upload"


def _predict_one(rt, data: bytes, name: str) -> dict:
    """preprocess + predict_arrays, exactly the CLI's path: the JSON of `predict --json` minus `path`."""
    from mnist_edge.edge.predict import predict_arrays
    from mnist_edge.edge.preprocess import preprocess

    image = preprocess(data, name=name)  # uint8 (28, 28)
    out = predict_arrays(rt, image[None], [name])[0].to_json()  # (1, 28, 28) batch of one
    del out["path"]
    return out


class AccessLog:
    """Pure ASGI middleware: one log line per HTTP request, 'CLIENT - METHOD PATH STATUS MS ms', once sent."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500  # if the app fails before it starts a response

        async def send_logged(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            client = scope.get("client")
            who = f"{client[0]}:{client[1]}" if client else "-"
            ms = 1000 * (time.perf_counter() - start)
            log.info("%s - %s %s %d %.1f ms", who, scope["method"], scope["path"], status, ms)


def page_files(rt) -> dict[str, Path | bytes]:
    """URL path (without the leading /) -> a file to send, or generated bytes: the page for this model.

    No service worker: a server's page is online by definition, and a cached page would hide a new model.
    """
    files: dict[str, Path | bytes] = {name: web.STATIC / name for name in web.PAGE_FILES}
    files[""] = web.STATIC / "index.html"
    vendored = web.vendoring_problem() is None
    if vendored:
        files.update({f"{web.ORT_DIR}/{name}": path for name, path in web.ort_files().items()})
    model = rt.path if rt.format in web.browser_formats() else None
    if model is not None:
        files[model.name] = model
    cfg = web.config("server", rt.metadata, model, rt.format, web.ort_urls() if vendored else None, None)
    files["config.json"] = json.dumps(cfg).encode()
    files["manifest.webmanifest"] = json.dumps(web.manifest()).encode()
    files.update(web.icons())
    return files


def _add_page_routes(app, rt) -> None:
    """GET routes for page_files(), each with PAGE_HEADERS and its media type."""
    from fastapi.responses import FileResponse, Response

    def route(content: Path | bytes, media_type: str):
        if isinstance(content, Path):
            return lambda: FileResponse(content, media_type=media_type, headers=PAGE_HEADERS)
        return lambda: Response(content, media_type=media_type, headers=PAGE_HEADERS)

    for path, content in page_files(rt).items():
        media_type = MEDIA_TYPES[Path(path or "index.html").suffix]
        app.add_api_route(f"/{path}", route(content, media_type), methods=["GET"], include_in_schema=False)


def create_app(model_path: str | os.PathLike | None = None, max_body_bytes: int = MAX_BODY_BYTES):
    """The FastAPI app serving one model; the model is loaded here, so a bad one fails before serving."""
    require("fastapi")
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    from mnist_edge.edge.info import describe
    from mnist_edge.edge.predict import model_for

    require("python_multipart", "serve", "serve's uploads (Starlette's request.form())")
    if max_body_bytes < 1:
        raise ValueError("max_body_bytes must be at least 1")
    rt = model_for(model_path)
    model_info = describe(rt)
    health = {"status": "ok", "model": str(rt.path), "format": rt.format, "test_acc": rt.metadata.test_acc}

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    # No /docs or /redoc: they load their scripts from a CDN, and edge devices are offline.
    app = FastAPI(title="mnist-edge", docs_url=None, redoc_url=None)
    app.state.runtime = rt
    app.state.max_body_bytes = max_body_bytes

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))  # 404, 405, malformed multipart

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("error while serving %s %s", request.method, request.url.path)
        return error(500, f"internal error ({type(exc).__name__})")

    _add_page_routes(app, rt)

    @app.get("/healthz")
    async def healthz() -> dict:
        return health

    @app.get("/model")
    async def model() -> dict:
        return model_info

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        """An image as the raw body, or multipart/form-data with the image in field `file`."""
        too_large = f"request body over the limit of {max_body_bytes:,} bytes"
        length = request.headers.get("content-length")
        if length is not None and length.strip().isdigit() and int(length) > max_body_bytes:
            return error(413, too_large)  # refused before reading a byte of it
        # A Request reading the same stream through a counter: a body without Content-Length (chunked)
        # or with a wrong one is cut off at the limit, never read whole into memory.
        limited = Request(request.scope, _limited_receive(request.receive, max_body_bytes))
        ctype = request.headers.get("content-type", "").lower()
        try:
            if ctype.startswith("multipart/form-data"):
                form = await limited.form(max_files=1, max_fields=16)
                try:
                    upload = form.get("file")
                    if upload is None:
                        return error(400, "multipart upload without a `file` field")
                    if isinstance(upload, str):
                        return error(400, "the `file` field must be a file upload, not a text field")
                    data, name = await upload.read(), _upload_name(upload.filename)
                finally:
                    await form.close()
            else:
                data, name = await limited.body(), RAW_NAME
        except BodyTooLarge:
            return error(413, too_large)
        if not data:
            if name != RAW_NAME:
                return error(400, f"{name}: empty file (0 bytes)")
            return error(400, "empty body: send an image (PNG, JPEG, ...) as the body, "
                              "or as a multipart upload in field `file`")
        try:
            # CPU work off the event loop (decode + preprocess ~10 ms, the model <1 ms), so other
            # requests keep flowing.
            return JSONResponse(await run_in_threadpool(_predict_one, rt, data, name))
        except ImageError as e:
            return error(image_error_status(e), str(e))

    app.add_middleware(AccessLog)
    return app


def app_from_env():
    """The app factory uvicorn's worker processes call (`--workers N`): settings from the environment."""
    model = os.environ.get(ENV_MODEL) or None
    return create_app(model, int(os.environ.get(ENV_MAX_BODY, MAX_BODY_BYTES)))


def log_config() -> dict:
    """uvicorn's logging config plus our access logger (uvicorn's own access log has no timings)."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["handlers"]["mnist_edge"] = {"formatter": "default", "class": "logging.StreamHandler",
                                     "stream": "ext://sys.stdout"}
    cfg["loggers"]["mnist_edge"] = {"handlers": ["mnist_edge"], "level": "INFO", "propagate": False}
    # python-multipart logs a warning for each malformed upload; the client already got a 400.
    cfg["loggers"]["python_multipart"] = {"level": "ERROR"}
    return cfg


def run(settings: ServeSettings) -> None:
    """Serve until interrupted. The model is loaded (and a bad one refused) before the port is opened."""
    host, port, workers = settings.host, settings.port, settings.workers
    model_path, max_body_bytes = settings.model, settings.max_body_bytes
    import logging.config

    uvicorn = require("uvicorn")
    require("fastapi")
    logging.config.dictConfig(log_config())  # uvicorn applies the same again; our lines print before it
    common = {"host": host, "port": port, "log_config": log_config(), "access_log": False,
              "server_header": False}
    if workers <= 1:
        app = create_app(model_path, max_body_bytes)
        _announce(app.state.runtime, host, port)
        uvicorn.run(app, **common)
        return
    from mnist_edge.edge.predict import model_for

    rt = model_for(model_path)  # refuse a bad model here, once, with its one-line error
    # Each worker imports the factory and loads the model itself; the path is made absolute because
    # "best in artifacts/" depends on the working directory.
    os.environ[ENV_MODEL] = str(rt.path.resolve())
    os.environ[ENV_MAX_BODY] = str(max_body_bytes)
    _announce(rt, host, port)
    uvicorn.run("mnist_edge.edge.serve:app_from_env", factory=True, workers=workers, **common)


def _announce(rt, host: str, port: int) -> None:
    acc = f", test accuracy {100 * rt.metadata.test_acc:.2f}%" if rt.metadata.test_acc is not None else ""
    where = f"http://{f'[{host}]' if ':' in host else host}:{port}/" if port else f"{host} (a free port, below)"
    log.info("mnist-edge: serving %s (%s%s) on %s", rt.path, rt.format, acc, where)
