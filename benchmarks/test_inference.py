"""Latency of every format at each batch size, in this one process (pytest-benchmark's view).

`mnist-edge bench` is the authoritative number (one process per format, accuracy, memory); this
suite keeps pytest-benchmark's history (--benchmark-json, --benchmark-compare) of the same points.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from mnist_edge.core.formats import FORMATS
from mnist_edge.core.settings import BenchSettings
from mnist_edge.verify.bench.stats import batch_of, percentiles, throughput, time_calls

TIME_S = float(os.environ.get("MNIST_EDGE_BENCH_TIME", "0.5"))  # timed seconds per point
MIN_ROUNDS, MAX_ROUNDS = 20, 20_000
# grouped by format (one model loaded at a time), at the batch sizes each format's program takes; emulated
# devices are not timed on the host (`mnist-edge bench` counts their instructions)
POINTS = [(n, b) for n, f in FORMATS.items() if not f.device
          for b in BenchSettings.batch_sizes if f.supports_batch(b)]


@pytest.fixture(scope="module")
def runtime_of(artifacts, threads):
    """runtime_of(format name): the loaded runtime, or a skip naming the missing file."""
    from mnist_edge.core.formats import load_runtime

    cache: dict = {}

    def get(name: str):
        path = artifacts / FORMATS[name].filename
        if not path.exists():  # a file, or a folder format's folder (C, TFLM, web)
            pytest.skip(f"{path} not found (train and export first, or set MNIST_EDGE_ARTIFACTS)")
        if name not in cache:
            cache.clear()  # free the previous format's model and thread pool first
            cache[name] = load_runtime(path, threads)
        return cache[name]

    return get


@pytest.mark.parametrize(("fmt", "batch_size"), POINTS, ids=[f"{f}-b{b}" for f, b in POINTS])
def test_inference_latency(benchmark, runtime_of, fmt, batch_size, summary):
    rt = runtime_of(fmt)
    pixels = np.random.default_rng(0).integers(0, 256, (batch_size, 28, 28), dtype=np.uint8)
    x = batch_of(rt.metadata.normalize(pixels), batch_size)  # normalised once, outside the timing
    # uncounted warm-up, which also sizes the number of timed rounds to ~TIME_S
    warm = time_calls(rt.run, x, min_time_s=0.1, min_iters=5)
    rounds = int(np.clip(TIME_S / np.median(warm), MIN_ROUNDS, MAX_ROUNDS))
    benchmark.group = f"batch {batch_size}"
    out = benchmark.pedantic(rt.run, args=(x,), rounds=rounds, iterations=1, warmup_rounds=3)
    assert out.shape == (batch_size, len(rt.metadata.class_names)) and np.isfinite(out).all()

    if benchmark.stats:  # None under --benchmark-disable
        lat = np.asarray(benchmark.stats.stats.data)
        p = percentiles(lat * 1e3)
        ips = throughput(batch_size, lat)
        benchmark.extra_info.update(format=fmt, batch_size=batch_size, latency_ms_p50=p[50],
                                    latency_ms_p90=p[90], latency_ms_p99=p[99], throughput_ips=ips)
        summary(f"inference {fmt:<17} batch {batch_size:>3}: p50 {p[50]:8.3f} ms  p99 {p[99]:8.3f} ms  "
                f"{ips:>9,.0f} img/s  ({len(lat)} rounds)")
