"""Load test of `mnist-edge serve`: a fixed number of /predict requests from concurrent clients, over loopback.

A real uvicorn server (as `mnist-edge serve` starts it) runs in a subprocess on a free port; CLIENTS threads,
each with its own keep-alive connection, POST drawn 280x280 PNGs (what the page sends) until REQUESTS are
done. Reports throughput and latency percentiles, prints them and writes them to
$MNIST_EDGE_ARTIFACTS/serve_load.json (default artifacts/). Asserts that no request failed, not a speed.
"""

from __future__ import annotations

import http.client
import io
import os
import platform
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnist_edge.core.fileio import write_json
from mnist_edge.edge.predict import shipped_model_path
from tests.live_server import live_server

REQUESTS = 3000  # measured requests, after WARMUP
WARMUP = 50
CLIENTS = 16  # concurrent connections
TIME_CAP_S = 180.0  # the measured part stops here whatever happens (a failure: fewer than REQUESTS done)
# Another model (e.g. the int8 ONNX) or more uvicorn workers can be measured through these.
MODEL = os.environ.get("MNIST_EDGE_LOAD_MODEL") or str(shipped_model_path())
WORKERS = int(os.environ.get("MNIST_EDGE_LOAD_WORKERS", "1"))


def _drawings() -> list[bytes]:
    """A few thick white-on-black digits on a 280x280 canvas, PNG, as the page's canvas sends them."""
    strokes = [[(120, 70), (150, 45), (150, 235)], [(75, 55), (205, 55), (120, 235)],
               [(80, 80), (140, 40), (200, 80), (90, 230), (210, 230)], [(90, 60), (190, 60), (110, 140), (190, 200),
                                                                        (90, 235)]]
    out = []
    for pts in strokes:
        img = Image.new("L", (280, 280), 0)
        ImageDraw.Draw(img).line(pts, fill=255, width=22, joint="curve")
        buf = io.BytesIO()
        img.save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def _post(conn: http.client.HTTPConnection, body: bytes | None, method: str = "POST") -> int:
    """One request on a kept-alive connection; the status (the body is read, and checked on 200)."""
    conn.request(method, "/predict" if method == "POST" else "/healthz", body=body,
                 headers={"Content-Type": "image/png"} if body is not None else {})
    r = conn.getresponse()
    data = r.read()
    if r.status == 200 and method == "POST" and b'"probabilities"' not in data:
        return -1
    return r.status


def _load(port: int, bodies: list[bytes], n: int, clients: int, cap_s: float) -> tuple[list[float], list[str], float]:
    """n requests spread over `clients` threads: (latencies in s, failures, wall seconds)."""
    lock = threading.Lock()
    next_i = iter(range(n))
    latencies: list[float] = []
    failures: list[str] = []
    deadline = time.monotonic() + cap_s

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        try:
            while time.monotonic() < deadline:
                with lock:
                    i = next(next_i, None)
                if i is None:
                    break
                t0 = time.perf_counter()
                try:
                    status = _post(conn, bodies[i % len(bodies)])
                except (OSError, http.client.HTTPException) as e:
                    status = f"{type(e).__name__}: {e}"
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                mine.append(time.perf_counter() - t0)
                if status != 200:
                    with lock:
                        failures.append(f"request {i}: {status}")
        finally:
            conn.close()
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(cap_s + 60)
    return latencies, failures, time.perf_counter() - t0


@pytest.mark.skipif(not Path(MODEL).is_file(),
                    reason=f"serve load test needs the shipped model ({MODEL}); or set MNIST_EDGE_LOAD_MODEL")
def test_serve_load(tmp_path, artifacts, summary):
    pytest.importorskip("uvicorn", reason="needs the serve extra: pip install -e '.[serve]'")
    pytest.importorskip("fastapi", reason="needs the serve extra: pip install -e '.[serve]'")
    bodies = _drawings()
    with live_server(Path(MODEL), tmp_path / "server.log", workers=WORKERS) as port:
        _, warm_failures, _ = _load(port, bodies, WARMUP, CLIENTS, 60)  # sessions, threads, caches warm
        latencies, failures, seconds = _load(port, bodies, REQUESTS, CLIENTS, TIME_CAP_S)
    ms = np.asarray(latencies) * 1000
    report = {
        "requests": REQUESTS, "completed": len(latencies), "failed": len(failures), "clients": CLIENTS,
        "workers": WORKERS, "seconds": round(seconds, 3), "req_per_s": round(len(latencies) / seconds, 1),
        "latency_ms": {k: round(float(np.percentile(ms, q)), 2) for k, q in
                       (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))} if len(ms) else {},
        "body_bytes": [len(b) for b in bodies], "model": MODEL, "cpu_count": os.cpu_count(),
        "python": platform.python_version(), "machine": platform.machine(),
    }
    out = artifacts / "serve_load.json"
    write_json(out, report)
    lat = report["latency_ms"]
    summary(f"serve load: {report['completed']}/{REQUESTS} requests from {CLIENTS} clients in {seconds:.1f} s: "
          f"{report['req_per_s']} req/s, latency p50 {lat.get('p50')} ms, p90 {lat.get('p90')} ms, "
          f"p99 {lat.get('p99')} ms, max {lat.get('max')} ms; {len(failures)} failed (written to {out})")
    assert not warm_failures, warm_failures[:5]
    assert not failures, failures[:5]
    assert len(latencies) == REQUESTS, f"only {len(latencies)} of {REQUESTS} requests within {TIME_CAP_S:.0f} s"
