"""`serve`: the endpoints, every bad request (JSON error, right status, server still up), the CLI's numbers,
no torch in the server process, a real uvicorn server, and the drawing page in headless Chromium."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from mnist_edge.edge.predict import shipped_model_path

from .conftest import chromium, write_idx_dataset
from .live_server import live_server, request

pytest.importorskip("fastapi", reason="serve tests need the serve extra: pip install -e '.[serve]'")
pytest.importorskip("uvicorn", reason="serve tests need the serve extra: pip install -e '.[serve]'")

SHIPPED = shipped_model_path()
needs_shipped = pytest.mark.skipif(not SHIPPED.is_file(),
                                   reason=f"needs the real shipped model {SHIPPED} (random weights predict nothing)")
TEST_LIMIT = 200_000  # max_body_bytes of the test app: small, so over-limit bodies stay cheap
# MNIST_EDGE_SCREENSHOTS=DIR keeps the browser tests' screenshots there, for a person to look at.
SCREENSHOTS = os.environ.get("MNIST_EDGE_SCREENSHOTS")


# ------------------------------------------------------------------------------------------ inputs

def draw(digit: str, size: int = 280, ink: int = 255, paper: int = 0, width: int = 22) -> bytes:
    """A PNG of a thick 1 or 7 on a square canvas, as the page's canvas sends it (white on black)."""
    img = Image.new("L", (size, size), paper)
    d = ImageDraw.Draw(img)
    s = size / 280
    if digit == "1":
        d.line([(120 * s, 70 * s), (150 * s, 45 * s), (150 * s, 235 * s)], fill=ink, width=round(width * s),
               joint="curve")
    elif digit == "7":
        d.line([(75 * s, 55 * s), (205 * s, 55 * s), (120 * s, 235 * s)], fill=ink, width=round(width * s),
               joint="curve")
    else:
        raise ValueError(digit)
    return png_bytes(img)


def png_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def bomb_png() -> bytes:
    """A PNG of a few KB that would decode to more than MAX_PIXELS pixels."""
    from mnist_edge.edge.preprocess import MAX_PIXELS

    side = int(MAX_PIXELS ** 0.5) + 100
    return png_bytes(Image.new("1", (side, side), 0))


# ------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """The shipped model when it is there, else a random-weight ONNX model exported here (needs torch)."""
    if SHIPPED.is_file():
        return SHIPPED
    pytest.importorskip("torch", reason="no shipped model, and making a test model needs the train extra")
    from mnist_edge.core.settings import ExportSettings
    from mnist_edge.verify.export import export_models

    from .conftest import save_random_checkpoint

    root = tmp_path_factory.mktemp("serve-model")
    data = write_idx_dataset(root / "data", n_train=64, n_test=64)
    save_random_checkpoint(root / "model.pth")
    export_models(ExportSettings(checkpoint=root / "model.pth", out=root, format="onnx", data_dir=str(data)))
    return root / "model.onnx"


@pytest.fixture(scope="module")
def client(model_file):
    from fastapi.testclient import TestClient

    from mnist_edge.edge.serve import create_app

    with TestClient(create_app(model_file, max_body_bytes=TEST_LIMIT)) as c:
        yield c


def assert_still_serving(client) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


# ------------------------------------------------------------------------------------------ endpoints

def test_healthz_names_the_model(client, model_file):
    from mnist_edge.core.formats import load_runtime

    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "model": str(model_file), "format": "onnx",
                        "test_acc": load_runtime(model_file).metadata.test_acc}


def test_model_is_what_info_describes(client, model_file):
    from mnist_edge.core.formats import load_runtime
    from mnist_edge.edge.info import describe

    r = client.get("/model")
    assert r.status_code == 200 and r.json() == json.loads(json.dumps(describe(load_runtime(model_file))))


def test_predict_raw_body_has_predict_json_shape(client):
    r = client.post("/predict", content=draw("7"), headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    d = r.json()
    assert set(d) == {"digit", "label", "confidence", "probabilities"}
    assert len(d["probabilities"]) == 10 and abs(sum(d["probabilities"]) - 1) < 1e-4
    assert max(d["probabilities"]) == d["probabilities"][d["digit"]]
    assert abs(d["confidence"] - d["probabilities"][d["digit"]]) <= 1e-6  # probabilities are rounded to 6 places
    assert d["label"] == str(d["digit"])


def test_multipart_and_raw_body_give_the_same_answer(client):
    png = draw("1")
    raw = client.post("/predict", content=png)
    multi = client.post("/predict", files={"file": ("one.png", png, "image/png")})
    # curl --data-binary sends application/x-www-form-urlencoded: still a raw image body
    curl_like = client.post("/predict", content=png,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert raw.status_code == multi.status_code == curl_like.status_code == 200
    assert raw.json() == multi.json() == curl_like.json()


def test_same_numbers_as_predict_json(client, model_file, tmp_path, runner):
    from mnist_edge.cli import cli

    path = tmp_path / "seven.png"
    path.write_bytes(draw("7", ink=20, paper=240))  # dark on light: preprocess inverts it
    res = runner.invoke(cli, ["predict", "--json", "--model", str(model_file), str(path)])
    assert res.exit_code == 0, res.output
    expected = json.loads(res.output)
    del expected["path"]
    assert client.post("/predict", content=path.read_bytes()).json() == expected


# What the page is made of under serve (the model's file and /ort/ are checked in test_web.py).
PAGE_PATHS = ("/", "/index.html", "/style.css", "/app.js", "/worker.js", "/preprocess.js", "/config.json",
              "/manifest.webmanifest")


def test_page_is_self_contained(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html, css, js = r.text, client.get("/style.css").text, client.get("/app.js").text
    assert '<meta name="viewport"' in html and "touch-action: none" in css and "<canvas" in html
    assert "pointerdown" in js and 'type="file"' in html and 'id="clear"' in html
    # offline devices: nothing loaded from elsewhere, and the browser is told so
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", html)
    # no inline code or style: the policy allows none ('unsafe-inline' is nowhere)
    assert not re.search(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=", html)
    for path in PAGE_PATHS:
        r = client.get(path)
        assert r.status_code == 200, path
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", r.text), path  # no address anywhere
        csp = r.headers["content-security-policy"]
        assert "connect-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp, path
        assert r.headers["cross-origin-embedder-policy"] == "require-corp", path  # with COOP: wasm threads
        assert r.headers["cross-origin-opener-policy"] == "same-origin", path
    assert client.get("/docs").status_code == 404  # FastAPI's docs page loads a CDN: off


# ------------------------------------------------------------------------------------------ bad requests

def _corrupt_png() -> bytes:
    png = bytearray(draw("7"))
    i = png.index(b"IDAT") + 20
    png[i:i + 16] = bytes(16)  # wrong CRC, broken zlib stream
    return bytes(png)


BAD_BODIES = {
    # name: (what makes the body, status, words in the error); made when used, not at collection
    "empty": (lambda: b"", 400, "empty"),
    "text": (lambda: b"hello, this is not an image\n" * 10, 415, "not an image"),
    "unsupported format": (lambda: png_bytes(Image.new("L", (40, 40), 0), "SGI"), 415, "unsupported image format"),
    "truncated": (lambda: draw("7")[:300], 400, "truncated"),
    "corrupt": (_corrupt_png, 400, "corrupt"),
    "decompression bomb": (bomb_png, 413, "too large"),
    "over the limit": (lambda: b"\x89PNG" + bytes(TEST_LIMIT), 413, f"limit of {TEST_LIMIT:,} bytes"),
}


@pytest.mark.parametrize("case", BAD_BODIES)
def test_bad_raw_body_is_a_json_error_and_server_keeps_serving(client, case):
    make, status, words = BAD_BODIES[case]
    r = client.post("/predict", content=make())
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(r.json()) == {"error"} and words in err and "\n" not in err
    assert_still_serving(client)


@pytest.mark.parametrize("case", ["empty", "text", "truncated", "decompression bomb"])
def test_bad_upload_is_a_json_error_naming_the_file(client, case):
    make, status, words = BAD_BODIES[case]
    r = client.post("/predict", files={"file": ("pic.png", make(), "image/png")})
    assert r.status_code == status and words in r.json()["error"] and r.json()["error"].startswith("pic.png: ")
    assert_still_serving(client)


def test_body_over_the_limit_without_content_length_is_cut_off(client):
    sent = []

    def chunks():  # chunked transfer: no Content-Length to refuse up front
        for _ in range(50):
            sent.append(1)
            yield bytes(16_384)

    r = client.post("/predict", content=chunks())
    assert r.status_code == 413 and "limit" in r.json()["error"]
    assert_still_serving(client)


def test_multipart_problems(client):
    png = draw("1")
    cases = [
        (client.post("/predict", files={"image": ("one.png", png)}), 400, "without a `file` field"),
        (client.post("/predict", data={"file": "not a file"}, files={"x": ("a", b"")}), 400, "not a text field"),
        (client.post("/predict", content=png, headers={"Content-Type": "multipart/form-data; boundary=zz"}),
         400, "multipart"),
        (client.post("/predict", files={"file": ("big.png", bytes(TEST_LIMIT + 1))}), 413, "limit"),
    ]
    for r, status, words in cases:
        assert r.status_code == status and words in r.json()["error"].lower(), r.text
        assert_still_serving(client)


def test_unknown_path_and_wrong_method_are_json(client):
    r = client.get("/nothing-here")
    assert r.status_code == 404 and r.json() == {"error": "Not Found"}
    r = client.get("/predict")
    assert r.status_code == 405 and r.json() == {"error": "Method Not Allowed"}
    assert_still_serving(client)


def test_max_body_bytes_is_configurable(model_file):
    from fastapi.testclient import TestClient

    from mnist_edge.edge.serve import MAX_BODY_BYTES, create_app

    assert MAX_BODY_BYTES == 5 * 1024 * 1024
    png = draw("7")
    with TestClient(create_app(model_file, max_body_bytes=len(png))) as c:
        assert c.post("/predict", content=png).status_code == 200
        assert c.post("/predict", content=png + b"\0").status_code == 413
    with pytest.raises(ValueError):
        create_app(model_file, max_body_bytes=0)


def test_bad_model_fails_before_serving(tmp_path):
    from mnist_edge.core.errors import ModelFileError
    from mnist_edge.edge.serve import create_app

    with pytest.raises(ModelFileError, match="no such model file"):
        create_app(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x01garbage" * 20)
    # run() must refuse it too, for one worker and for several, without opening the port
    code = (f"from mnist_edge.core.settings import ServeSettings\n"
            f"from mnist_edge.edge.serve import run\n"
            f"for w in (1, 2):\n"
            f"    try:\n"
            f"        run(ServeSettings(port=0, workers=w, model={str(bad)!r}))\n"
            f"    except Exception as e:\n"
            f"        print(type(e).__name__, str(e).replace(chr(10), ' '))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 2 and all(ln.startswith(f"ModelFileError {bad}: corrupt") for ln in lines), res
    assert "Uvicorn running" not in res.stderr


# ------------------------------------------------------------------------------------------ the shipped model

@needs_shipped
@pytest.mark.parametrize("digit", ["1", "7"])
def test_drawn_digit_is_recognised_by_the_shipped_model(client, digit):
    for ink, paper in ((255, 0), (30, 235)):  # the page's white on black, and dark ink on light paper
        r = client.post("/predict", content=draw(digit, ink=ink, paper=paper))
        assert r.status_code == 200 and r.json()["label"] == digit, r.json()
        assert r.json()["confidence"] > 0.5


# ------------------------------------------------------------------------------------------ light imports

def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_server_never_imports_torch(model_file, tmp_path):
    png = tmp_path / "seven.png"
    png.write_bytes(draw("7"))
    code = f"""
import sys, json
for m in ("torch", "torchvision", "matplotlib"):
    sys.modules[m] = None  # importing any of them now raises ImportError
from fastapi.testclient import TestClient
from mnist_edge.edge.serve import create_app
png = open({str(png)!r}, "rb").read()
c = TestClient(create_app({str(model_file)!r}))
codes = [c.post("/predict", content=png).status_code,
         c.post("/predict", files={{"file": ("a.png", png)}}).status_code,
         c.post("/predict", content=b"junk").status_code]
codes += [c.get(p).status_code for p in ("/healthz", "/model", "/")]
heavy = sorted(m for m, v in sys.modules.items() if v is not None and m.split(".")[0] in
               ("torch", "torchvision", "onnx", "matplotlib"))
print(json.dumps({{"codes": codes, "heavy": heavy}}))
"""
    res = _python(code)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"codes": [200, 200, 415, 200, 200, 200], "heavy": []}


def test_importing_serve_is_light_and_missing_extra_names_it():
    res = _python("import sys; import mnist_edge.edge.serve; "
                  "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'onnxruntime') if m in sys.modules))")
    assert res.returncode == 0 and res.stdout.strip() == "[]", res
    for missing, call in (("fastapi", "create_app()"), ("uvicorn", "run(ServeSettings(port=0))"),
                          ("python_multipart", "create_app()")):
        res = _python(f"import sys; sys.modules[{missing!r}] = None\n"
                      f"from mnist_edge.core.settings import ServeSettings\n"
                      f"from mnist_edge.edge.serve import create_app, run\n"
                      f"try:\n    {call}\nexcept Exception as e:\n    print(type(e).__name__, e)")
        assert res.stdout.startswith("MissingExtraError ") and "install mnist-edge[serve]" in res.stdout, res


# ------------------------------------------------------------------------------------------ a real server



@pytest.fixture(scope="module")
def server(model_file, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    with live_server(model_file, log, max_body_bytes=TEST_LIMIT) as port:
        yield port, log


def test_real_server_predicts_and_logs_one_line_per_request(server):
    port, log = server
    status, d = request(port, "POST", "/predict", draw("7"), {"Content-Type": "image/png"})
    assert status == 200 and set(d) == {"digit", "label", "confidence", "probabilities"}
    assert request(port, "POST", "/predict", b"nope")[0] == 415
    assert request(port, "GET", "/missing")[0] == 404
    time.sleep(0.2)
    lines = log.read_text().splitlines()
    for pattern in (r"POST /predict 200 [\d.]+ ms$", r"POST /predict 415 [\d.]+ ms$", r"GET /missing 404 [\d.]+ ms$"):
        assert sum(bool(re.search(pattern, ln)) for ln in lines) == 1, (pattern, lines)
    assert not any('"POST /predict HTTP/1.1"' in ln for ln in lines)  # uvicorn's own access log is off


def _send_until_answered(port: int, head: bytes, chunk: bytes, max_bytes: int) -> tuple[bytes, int]:
    """Send `head`, then `chunk`s until the server answers (or max_bytes): (its answer, bytes of body sent)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head)
        s.setblocking(False)
        answer = b""
        deadline = time.monotonic() + 30
        while sent < max_bytes and time.monotonic() < deadline:
            try:
                answer += s.recv(65536)
                if answer:
                    break
            except BlockingIOError:
                pass
            try:
                sent += s.send(chunk)
            except BlockingIOError:
                time.sleep(0.005)
            except OSError:  # the server closed the connection after answering
                break
        s.setblocking(True)
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                more = s.recv(65536)
                if not more:
                    break
                answer += more
    return answer, sent


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_real_server_refuses_a_huge_body_without_reading_it(server, chunked):
    port, _ = server
    gigabyte = 1 << 30
    if chunked:
        head = b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        piece = bytes(65536)
        chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
    else:
        head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % gigabyte
        chunk = bytes(65536)
    answer, sent = _send_until_answered(port, head, chunk, gigabyte)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b'"error"' in answer and b"limit" in answer
    # answered once the limit was passed: what was sent is the limit plus the kernel's socket buffers
    # (a few MB on loopback), not the gigabyte a server reading the whole body would have taken
    assert sent < 64 << 20
    assert request(port, "GET", "/healthz")[0] == 200


def test_several_workers_serve_the_same_model(model_file, tmp_path):
    with live_server(model_file, tmp_path / "workers.log", workers=2) as port:
        status, health = request(port, "GET", "/healthz")
        assert status == 200 and health["model"] == str(model_file.resolve())
        answers = [request(port, "POST", "/predict", draw("1"))[1] for _ in range(6)]
        assert all(a == answers[0] for a in answers) and "digit" in answers[0]


# ------------------------------------------------------------------------------------------ the page in a browser

@pytest.fixture(scope="module")
def browser():
    yield from chromium()


def _draw_on_canvas(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Mouse strokes on the canvas, in 0..1 canvas coordinates."""
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=12)
        page.mouse.up()


SEVEN = [[(0.27, 0.2), (0.73, 0.2), (0.43, 0.84)]]
ONE = [[(0.43, 0.25), (0.54, 0.16), (0.54, 0.84)]]


def test_page_draw_clear_upload_in_chromium(browser, server, tmp_path):
    from playwright.sync_api import expect

    port, _ = server
    base = f"http://127.0.0.1:{port}/"
    page = browser.new_page(viewport={"width": 1000, "height": 760})
    elsewhere = []
    page.on("request", lambda r: r.url.startswith((base, "blob:", "data:")) or elsewhere.append(r.url))
    page.goto(base)
    expect(page.locator("#bars li")).to_have_count(10)

    _draw_on_canvas(page, SEVEN)
    digit = page.locator("#digit")
    if SHIPPED.is_file():
        expect(digit).to_have_text("7", timeout=10_000)
    else:  # a random-weight model: the page must still show some answer and its bars
        expect(digit).to_have_text(re.compile(r"^\d$"), timeout=10_000)
    widths = page.eval_on_selector_all("#bars .fill", "els => els.map(e => parseFloat(e.style.width))")
    assert len(widths) == 10 and abs(sum(widths) - 100) < 1.5
    assert page.locator("#bars li.top").count() == 1
    page.wait_for_timeout(400)  # let the bars finish their 150 ms transition before the screenshot
    page.screenshot(path=str(tmp_path / "drawn.png"))
    if SCREENSHOTS:
        shutil.copyfile(tmp_path / "drawn.png", Path(SCREENSHOTS) / "serve_screenshot.png")

    page.click("#clear")
    expect(digit).to_have_text("–")
    assert page.eval_on_selector("#pad", "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, "
                                         "c.height).data; return d.some((v, i) => i % 4 < 3 && v > 0); }") is False

    upload = tmp_path / "one.png"
    upload.write_bytes(draw("1", ink=25, paper=235))
    page.set_input_files("#file", str(upload))
    expect(page.locator("#preview")).to_be_visible()
    expect(page.locator("#preview-caption")).to_have_text("one.png")
    expect(digit).to_have_text("1" if SHIPPED.is_file() else re.compile(r"^\d$"), timeout=10_000)

    junk = tmp_path / "notes.txt"
    junk.write_text("not an image")
    page.set_input_files("#file", str(junk))
    expect(page.locator("#error")).to_contain_text("notes.txt: not an image", timeout=10_000)
    assert elsewhere == [], elsewhere
    page.close()


def test_page_fits_a_phone_and_takes_touch(browser, server, tmp_path):
    from playwright.sync_api import expect

    port, _ = server
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                              is_mobile=True, has_touch=True)
    page = ctx.new_page()
    page.goto(f"http://127.0.0.1:{port}/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    box = page.locator("#pad").bounding_box()
    assert 300 <= box["width"] <= 390 and abs(box["width"] - box["height"]) < 2
    assert page.eval_on_selector("#pad", "c => getComputedStyle(c).touchAction") == "none"
    # a finger: real touch input through the DevTools protocol; Chromium turns it into touch pointer events
    cdp = ctx.new_cdp_session(page)
    pts = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in ONE[0]]
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": pts[0][0], "y": pts[0][1]}]})
    for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):  # consecutive pairs
        for t in range(1, 13):
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [
                {"x": x0 + (x1 - x0) * t / 12, "y": y0 + (y1 - y0) * t / 12}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    expect(page.locator("#digit")).to_have_text("1" if SHIPPED.is_file() else re.compile(r"^\d$"), timeout=10_000)
    page.wait_for_timeout(400)
    page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
    if SCREENSHOTS:
        shutil.copyfile(tmp_path / "phone.png", Path(SCREENSHOTS) / "serve_screenshot_phone.png")
    ctx.close()
