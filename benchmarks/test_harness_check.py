"""An independent cross-check: a bare InferenceSession in a plain perf_counter loop against what the
`mnist-edge bench` worker measures for onnx at batch 1 and 1 thread, window for window, interleaved.
They must agree within 10%: the harness (worker process, runtime wrapper, timing loop) adds nothing.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from mnist_edge.core.formats import FORMATS
from mnist_edge.core.settings import BenchSettings
from mnist_edge.verify.bench.run import Worker

TOLERANCE = 0.10
ROUNDS, WINDOW_S = 10, 0.2


def bare_window(sess, feed, seconds: float) -> np.ndarray:
    """Seconds per call of sess.run with nothing but onnxruntime and time.perf_counter."""
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 20:
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t0)
    return np.asarray(times)


def test_bench_worker_agrees_with_a_bare_onnxruntime_loop(artifacts, data_dir, summary):
    import onnxruntime as ort

    fmt = FORMATS["onnx"]
    path = artifacts / fmt.filename
    if not path.is_file():
        pytest.skip(f"{path} not found (train and export first, or set MNIST_EDGE_ARTIFACTS)")
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: np.random.default_rng(0).standard_normal((1, 1, 28, 28), dtype=np.float32)}
    worker = Worker(fmt, path, BenchSettings(artifacts=artifacts, data_dir=data_dir), threads=1)
    try:
        bare_window(sess, feed, WINDOW_S)  # warm-up, both sides
        worker.window(1, WINDOW_S, 20, 10 * WINDOW_S)
        bare, harness = [], []
        for _ in range(ROUNDS):  # interleaved: a slow second of the machine hits both
            bare.append(bare_window(sess, feed, WINDOW_S))
            harness.append(worker.window(1, WINDOW_S, 20, 10 * WINDOW_S))
    finally:
        worker.close()
    b, h = (float(np.median(np.concatenate(x)) * 1e3) for x in (bare, harness))
    summary(f"harness check, onnx batch 1, 1 thread, {ROUNDS} interleaved windows: bare onnxruntime p50 "
            f"{b:.4f} ms, mnist-edge bench worker p50 {h:.4f} ms, ratio {h / b:.3f}")
    assert abs(h / b - 1) <= TOLERANCE, f"bench worker / bare loop = {h / b:.3f}, beyond {TOLERANCE:.0%}"
