"""An independent cross-check: a bare InferenceSession in a plain perf_counter loop against what the
`mnist-edge bench` worker reports for onnx at batch 1. They must agree within 20%: the harness
(subprocess, runtime wrapper, timing loop) adds no overhead of its own.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from mnist_edge.verify.bench.run import BenchSettings, run_worker
from mnist_edge.core.formats import FORMATS

TOLERANCE = 0.20
TIME_S = 1.0
ATTEMPTS = 3  # a shared machine can stall one side; harness overhead would show in every attempt


def bare_p50_ms(path, threads: int, seconds: float = TIME_S) -> float:
    """p50 latency (ms) of batch 1 with nothing but onnxruntime and time.perf_counter."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: np.random.default_rng(0).standard_normal((1, 1, 28, 28), dtype=np.float32)}
    for _ in range(20):
        sess.run(None, feed)
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 50:
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def test_bench_worker_agrees_with_a_bare_onnxruntime_loop(artifacts, threads, data_dir, summary):
    fmt = FORMATS["onnx"]
    path = artifacts / fmt.filename
    if not path.is_file():
        pytest.skip(f"{path} not found (train and export first, or set MNIST_EDGE_ARTIFACTS)")
    cfg = BenchSettings(artifacts=artifacts, batch_sizes=(1,), threads=threads, data_dir=data_dir, min_time_s=TIME_S)
    tries = []
    for _ in range(ATTEMPTS):
        bare = bare_p50_ms(path, threads)
        harness = run_worker(fmt, path, cfg, threads)["points"][0]["latency_ms_p50"]
        tries.append((bare, harness))
        summary(f"harness check, onnx batch 1, {threads} thread(s): bare onnxruntime p50 {bare:.4f} ms, "
                f"mnist-edge bench p50 {harness:.4f} ms, ratio {harness / bare:.3f}")
        if abs(harness / bare - 1) <= TOLERANCE:
            break
    ratios = [h / b for b, h in tries]
    assert min(abs(r - 1) for r in ratios) <= TOLERANCE, (
        f"mnist-edge bench and a bare onnxruntime loop disagree by more than {TOLERANCE:.0%} "
        f"(bench/bare ratios {', '.join(f'{r:.3f}' for r in ratios)})")
