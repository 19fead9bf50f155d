"""The statistics of `bench` (pure, numpy only): timing calls, percentiles, and intervals over windows.

A point (format, batch size) is timed in several short windows interleaved with every other point, so a
slow second hits every format alike. Its p50 comes from all windows' calls; its 95% interval, and the
interval of a ratio of two points' p50s, from a bootstrap over windows (whole windows are resampled,
because calls within one window share that window's machine state).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

PERCENTILES = (50, 90, 99)
BOOTSTRAP = 1000  # resamples: enough for a 95% interval of a median
CONFIDENCE = 0.95
NOISY = 0.10  # a point whose p50 interval reaches further than +-10% is not trustworthy


def percentiles(samples: np.ndarray | Sequence[float], qs: tuple[int, ...] = PERCENTILES) -> dict[int, float]:
    """{q: q-th percentile} of the samples (linear interpolation between order statistics)."""
    arr = np.asarray(samples, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("percentiles of no samples")
    return {q: float(v) for q, v in zip(qs, np.percentile(arr, qs), strict=True)}


def throughput(batch_size: int, latencies_s: np.ndarray | Sequence[float]) -> float:
    """Images per second when batches of `batch_size` run back to back with these latencies (s)."""
    total = float(np.sum(latencies_s))
    if total <= 0:
        raise ValueError("throughput of no time")
    return batch_size * len(latencies_s) / total


def time_calls(fn: Callable, x, min_time_s: float, min_iters: int, warmup_s: float = 0.0,
               warmup_iters: int = 0, max_time_s: float = float("inf")) -> np.ndarray:
    """Seconds per call of fn(x): uncounted warm-up, then calls until min_time_s has passed and
    min_iters calls are made (whichever is later), or max_time_s has passed (at least 2 calls)."""
    clock = time.perf_counter
    end = clock() + warmup_s
    i = 0
    while i < warmup_iters or clock() < end:
        fn(x)
        i += 1
    times: list[int] = []
    ns = time.perf_counter_ns
    start = clock()
    while True:
        elapsed = clock() - start
        if elapsed >= min_time_s and (len(times) >= min_iters or (elapsed >= max_time_s and len(times) >= 2)):
            break
        t0 = ns()
        fn(x)
        times.append(ns() - t0)
    return np.asarray(times, dtype=np.float64) / 1e9


def batch_of(x: np.ndarray, batch_size: int) -> np.ndarray:
    """The first `batch_size` inputs, repeated when the set is smaller (tiny test sets)."""
    if batch_size <= len(x):
        return np.ascontiguousarray(x[:batch_size])
    return np.ascontiguousarray(np.resize(x, (batch_size, *x.shape[1:])))


def _resamples(n_windows: int, seed: int) -> np.ndarray:
    """(BOOTSTRAP, n_windows) window indices drawn with replacement; the same seed pairs two points."""
    return np.random.default_rng(seed).integers(0, n_windows, (BOOTSTRAP, n_windows))


def _medians(windows: Sequence[np.ndarray], picks: np.ndarray) -> np.ndarray:
    """The median of the pooled calls of each resample of windows."""
    return np.array([np.median(np.concatenate([windows[i] for i in row])) for row in picks])


def interval(lo_hi: np.ndarray) -> tuple[float, float]:
    tail = 100 * (1 - CONFIDENCE) / 2
    lo, hi = np.percentile(lo_hi, [tail, 100 - tail])
    return float(lo), float(hi)


def p50_interval(windows: Sequence[np.ndarray], seed: int = 0) -> tuple[float, float]:
    """95% interval of the p50 of all windows' calls, by resampling whole windows."""
    if len(windows) < 2:
        m = float(np.median(np.concatenate(windows)))
        return m, m
    return interval(_medians(windows, _resamples(len(windows), seed)))


def ratio_interval(a: Sequence[np.ndarray], b: Sequence[np.ndarray], seed: int = 0) -> tuple[float, float, float]:
    """(p50(b) / p50(a), and its 95% interval): how many times faster `a` is than `b`.

    Windows are paired by round (window i of both was timed in round i), so one resample of rounds
    serves both points and the noise they shared cancels in the ratio.
    """
    ratio = float(np.median(np.concatenate(b)) / np.median(np.concatenate(a)))
    n = min(len(a), len(b))
    if n < 2:
        return ratio, ratio, ratio
    picks = _resamples(n, seed)
    lo, hi = interval(_medians(b[:n], picks) / _medians(a[:n], picks))
    return ratio, lo, hi


def noisy(p50: float, lo: float, hi: float, limit: float = NOISY) -> bool:
    """Whether a p50's interval reaches further than `limit` (a fraction) from it."""
    return p50 > 0 and max(p50 - lo, hi - p50) > limit * p50


def slower_than(new: tuple[float, float, float], old: tuple[float, float, float], floor: float = NOISY / 2) -> bool:
    """(p50, lo, hi) now against before: slower beyond what both intervals allow (they do not overlap).

    Each interval counts as at least +-`floor` of its p50: an interval measures the noise within one run,
    and two runs on the same machine drift a few percent apart (measured here: up to 4% at batch 1), so
    a gate on the bare intervals would fail unchanged models.
    """
    new_lo = min(new[1], new[0] * (1 - floor))
    old_hi = max(old[2], old[0] * (1 + floor))
    return new[0] > old[0] and new_lo > old_hi
