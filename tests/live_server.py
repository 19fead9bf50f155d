"""A real `mnist-edge serve` process on a free loopback port, for the serve tests and the load benchmark."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path


@contextlib.contextmanager
def live_server(model: Path, log: Path, workers: int = 1, max_body_bytes: int | None = None, timeout: float = 60):
    """`run()` in a subprocess on a free loopback port (uvicorn binds port 0); yields the port."""
    opts = f", max_body_bytes={max_body_bytes}" if max_body_bytes else ""
    code = (f"from mnist_edge.core.settings import ServeSettings; from mnist_edge.edge.serve import run; "
            f"run(ServeSettings(port=0, workers={workers}, model={str(model)!r}{opts}))")
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT,
                                cwd=log.parent, start_new_session=True)
    try:
        port, deadline = None, time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if port is None:  # uvicorn says which port it got; then wait until the app answers
                m = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
                port = int(m.group(1)) if m else None
            with contextlib.suppress(OSError):
                if port and request(port, "GET", "/healthz")[0] == 200:
                    break
            time.sleep(0.1)
        else:
            raise AssertionError(f"server did not start within {timeout} s:\n{log.read_text(errors='replace')}")
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the workers of --workers N too
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, dict]:
    """One request over a plain loopback connection (http.client: never a proxy)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if r.headers.get("content-type", "").startswith("application/json")
                          else {"text": data.decode(errors="replace")})
    finally:
        conn.close()
