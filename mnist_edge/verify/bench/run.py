"""`mnist-edge bench`: latency, throughput, accuracy, size, load time and memory of every format, in rounds.

Every selected format is loaded in a worker process of its own (worker.py) and stays loaded. Each
(format, batch size) point is then timed in `rounds` short windows, interleaved across all points
(A B C ... A B C ...) after one uncounted warm-up window each, so that a slow second of a shared
machine hits every format alike. p50/p90/p99 come from all windows; intervals from stats.py.

The formats are the registry's rows whose file is in the artifacts folder: a format added there is
benchmarked with no change here, at the batch sizes its program takes.
"""

from __future__ import annotations

import json
import math
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from mnist_edge.core.errors import MnistEdgeError
from mnist_edge.core.fileio import MB, ensure_writable
from mnist_edge.core.formats import FORMATS, MAX_BATCH, Format, present
from mnist_edge.core.settings import BenchSettings
from mnist_edge.verify.bench.report import (
    ACCURACY_REFERENCE,
    SPEED_REFERENCE,
    BenchReport,
    BenchRow,
    machine_info,
    read_baseline,
    regressions,
    write_reports,
)
from mnist_edge.verify.bench.stats import p50_interval, percentiles, ratio_interval, throughput


class BenchError(MnistEdgeError):
    """A benchmark could not run: nothing to benchmark, a bad option, or a worker that failed."""


# --- options ------------------------------------------------------------------------------------

def parse_formats(text: str | None) -> tuple[str, ...] | None:
    """'onnx,onnx-int8' -> ('onnx', 'onnx-int8'); empty -> None (all present). Names are checked in run_bench."""
    if text is None or not text.strip():
        return None
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    return names or None


def parse_batch_sizes(text: str | None) -> tuple[int, ...]:
    """'1,32,256' -> (1, 32, 256), sorted, without repeats."""
    if text is None or not text.strip():
        return BenchSettings.batch_sizes
    sizes = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            sizes.append(int(part))
        except ValueError:
            raise BenchError(f"--batch-sizes: {part!r} is not a whole number (e.g. 1,32,256)") from None
    _check_batch_sizes(sizes)
    return tuple(sorted(set(sizes)))


def _check_batch_sizes(sizes) -> None:
    if not sizes:
        raise BenchError("--batch-sizes: no batch size given (e.g. 1,32,256)")
    for n in sizes:
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 1 <= n <= MAX_BATCH:
            raise BenchError(f"--batch-sizes: {n!r} is not a batch size between 1 and {MAX_BATCH}")


def default_threads() -> int:
    """Every core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def selected_formats(cfg: BenchSettings) -> list[tuple[Format, Path]]:
    """(format, file) to benchmark, in registry order; raises BenchError for anything a user got wrong."""
    art = Path(cfg.artifacts)
    if not art.is_dir():
        raise BenchError(f"{art}: no such folder (train and export first: `mnist-edge train`, "
                         "`mnist-edge export --quantize`)")
    if cfg.formats is None:
        found = present(art)
        if not found:
            raise BenchError(f"{art}: no models to benchmark (expected any of "
                             f"{', '.join(f.filename for f in FORMATS.values())})")
        return found
    unknown = [n for n in cfg.formats if n not in FORMATS]
    if unknown:
        raise BenchError(f"--formats: unknown format {unknown[0]!r} (known: {', '.join(FORMATS)})")
    found = dict(present(art, cfg.formats))
    missing = [FORMATS[n] for n in cfg.formats if FORMATS[n] not in found]
    if missing:
        raise BenchError(f"--formats {missing[0].name}: {art / missing[0].filename} not found "
                         "(export it first, or leave it out)")
    return list(found.items())


def check_settings(cfg: BenchSettings) -> None:
    _check_batch_sizes(cfg.batch_sizes)
    if cfg.formats is not None and not cfg.formats:
        raise BenchError("--formats: no format given")
    if cfg.threads is not None and cfg.threads < 1:
        raise BenchError(f"--threads must be at least 1, got {cfg.threads}")
    if cfg.min_accuracy is not None and not 0.0 <= cfg.min_accuracy <= 1.0:
        raise BenchError(f"--min-accuracy is a fraction 0..1 (e.g. 0.99), got {cfg.min_accuracy}")
    if cfg.device_images < 1 or (cfg.clock_mhz is not None and not cfg.clock_mhz > 0):
        raise BenchError("--device-images must be at least 1 and --clock-mhz above 0")
    if cfg.min_time_s < 0 or cfg.min_iters < 1 or cfg.rounds < 1:
        raise BenchError("the timing budget must be >= 0 s, >= 1 call and >= 1 round")


# --- the workers ----------------------------------------------------------------------------------

class Worker:
    """One format's worker process: started, asked for timing windows, then told to quit."""

    def __init__(self, fmt: Format, path: Path, cfg: BenchSettings, threads: int):
        self.fmt = fmt
        self.cfg = cfg
        # The row itself travels: a format registered only in this process (a plugin, a test) loads there too.
        spec = {"row": asdict(fmt), "path": str(path), "threads": threads, "data_dir": cfg.data_dir}
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[3])  # so the worker imports this very package
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        cmd = [sys.executable, "-m", "mnist_edge.verify.bench.worker", json.dumps(spec)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
        self.facts = self._reply()["ready"]

    def _reply(self) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], self.cfg.worker_timeout_s)
        if not ready:
            self.proc.kill()
            self.proc.wait()
            raise BenchError(f"{self.fmt.name}: the benchmark worker did not finish in "
                             f"{self.cfg.worker_timeout_s:g} s and was stopped")
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(self.cfg.worker_timeout_s)
            lines = [ln.strip() for ln in self.proc.stderr.read().splitlines() if ln.strip()]
            errors = [ln[len("error: "):] for ln in lines if ln.startswith("error: ")]
            why = errors[-1] if errors else (lines[-1][:200] if lines else "no message")
            code = self.proc.returncode
            how = f"exit {code}" if code is not None and code >= 0 else f"killed by signal {-(code or 0)}"
            raise BenchError(f"{self.fmt.name}: the benchmark worker failed ({how}): {why}")
        return json.loads(line)

    def window(self, batch: int, seconds: float, min_calls: int, max_seconds: float) -> np.ndarray:
        self.proc.stdin.write(json.dumps({"batch": batch, "seconds": seconds, "min_calls": min_calls,
                                          "max_seconds": max_seconds}) + "\n")
        self.proc.stdin.flush()
        return np.asarray(self._reply()["times"])

    def close(self) -> float | None:
        """Stop the worker; its peak RSS in MB (None if it already died)."""
        try:
            self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
            self.proc.stdin.flush()
            peak = self._reply().get("peak_rss_mb")
        except (OSError, BenchError, ValueError):
            peak = None
        finally:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return peak


def start_workers(todo: list[tuple[Format, Path]], cfg: BenchSettings, threads: int,
                  say: Callable[[str], None]) -> dict[str, Worker]:
    """One loaded worker per format, started one after the other (loading is not what is timed)."""
    workers: dict[str, Worker] = {}
    try:
        for i, (fmt, path) in enumerate(todo, 1):
            workers[fmt.name] = w = Worker(fmt, path, cfg, threads)
            say(f"  [{i}/{len(todo)}] {fmt.name:<17} loaded in {w.facts['load_ms']:.0f} ms, "
                f"accuracy {100 * w.facts['accuracy']:.2f}%"
                + (f" (as {w.facts['accuracy_by']} measured it on these bytes)" if w.facts.get("accuracy_by") else ""))
    except BaseException:
        for w in workers.values():
            w.close()
        raise
    return workers


def points_of(todo: list[tuple[Format, Path]], sizes: tuple[int, ...]) -> list[tuple[str, int]]:
    """(format, batch) of every point: each format at the requested sizes its program takes."""
    return [(f.name, b) for f, _ in todo for b in sizes if f.supports_batch(b)]


def measure(workers: dict[str, Worker], points: list[tuple[str, int]], cfg: BenchSettings,
            say: Callable[[str], None]) -> dict[tuple[str, int], list[np.ndarray]]:
    """{point: one array of call times (s) per round}: all points interleaved, round after round."""
    seconds = cfg.min_time_s / cfg.rounds
    calls = math.ceil(cfg.min_iters / cfg.rounds)
    cap = cfg.max_time_s / cfg.rounds
    windows: dict[tuple[str, int], list[np.ndarray]] = {p: [] for p in points}
    for fmt, bs in points:  # uncounted warm-up: allocations, ORT's first-run planning, the JIT
        workers[fmt].window(bs, cfg.warmup_s, cfg.warmup_iters, cfg.warmup_s + cap)
    for r in range(cfg.rounds):
        shift = r % len(points)  # each round starts elsewhere: no point is always first after a pause
        for p in points[shift:] + points[:shift]:
            windows[p].append(workers[p[0]].window(p[1], seconds, calls, cap))
        say(f"  round {r + 1}/{cfg.rounds} done")
    return windows


def build_rows(workers: dict[str, Worker], windows: dict, peaks: dict[str, float | None]) -> list[BenchRow]:
    rows = []
    ref_acc = workers[ACCURACY_REFERENCE].facts["accuracy"] if ACCURACY_REFERENCE in workers else None
    for (fmt, bs), ws in windows.items():
        facts = workers[fmt].facts
        all_s = np.concatenate(ws)
        p = percentiles(all_s * 1e3)
        lo, hi = p50_interval([w * 1e3 for w in ws])
        row = BenchRow(
            format=fmt, batch_size=bs, latency_ms_p50=p[50], latency_ms_p90=p[90], latency_ms_p99=p[99],
            p50_ci_ms=(lo, hi), throughput_ips=throughput(bs, all_s), accuracy=facts["accuracy"],
            size_bytes=facts["size_bytes"], load_ms=facts["load_ms"], peak_rss_mb=peaks.get(fmt) or 0.0,
            latency_ms_mean=float(all_s.mean() * 1e3), iterations=len(all_s), windows=len(ws),
            accuracy_delta=None if ref_acc is None else facts["accuracy"] - ref_acc,
            rss_after_load_mb=facts["rss_after_load_mb"], torch_imported=facts["torch_imported"],
            threads=facts["threads"], footprint=facts.get("footprint"))
        ref = windows.get((SPEED_REFERENCE, bs))
        if ref is not None:
            s, s_lo, s_hi = ratio_interval(ws, ref)
            row.speedup, row.speedup_ci = s, (s_lo, s_hi)
        rows.append(row)
    return rows


def verdict(rows: list[BenchRow], windows: dict) -> dict | None:
    """The fastest format at the smallest batch, against the runner-up: a tie when 1x is in the interval."""
    small = min(r.batch_size for r in rows)
    ranked = sorted((r for r in rows if r.batch_size == small), key=lambda r: r.latency_ms_p50)
    if len(ranked) < 2:
        return None
    a, b = ranked[0], ranked[1]
    ratio, lo, hi = ratio_interval(windows[(a.format, small)], windows[(b.format, small)])
    return {"batch_size": small, "fastest": a.format, "runner_up": b.format, "ratio": ratio, "ci": (lo, hi),
            "tie": lo <= 1.0}


def _devices(todo: list[tuple[Format, Path]], cfg: BenchSettings, say: Callable[[str], None]) -> list[dict]:
    """The emulated devices' rows on the first test images (see bench/devices.py)."""
    if not todo:
        return []
    from mnist_edge.core.data import load_test_split
    from mnist_edge.edge.runtimes.c import read_metadata
    from mnist_edge.verify.bench.devices import measure_devices

    say(f"emulated devices: instructions per inference on {cfg.device_images} test images")
    x = read_metadata(todo[0][1]).normalize(load_test_split(cfg.data_dir).images[:cfg.device_images])
    return measure_devices(todo, x, cfg.clock_mhz, say)


def run_bench(cfg: BenchSettings, say: Callable[[str], None] = lambda line: None,
              baseline: Path | None = None) -> BenchReport:
    """Benchmark every selected format in rounds; write the reports if cfg.write; check the baseline."""
    check_settings(cfg)
    todo = selected_formats(cfg)
    old = read_baseline(baseline) if baseline else None
    if cfg.write:
        ensure_writable(cfg.artifacts, 2 * MB, "the bench reports")  # refuse before measuring, not after
    threads = cfg.threads or default_threads()
    t0 = time.perf_counter()
    machine = machine_info(threads)  # before the run: its date, and the load that others put on the machine
    load, cores = machine["load_avg_1m"], machine["cores"] or 1
    say(f"bench: {len(todo)} format(s) x batch {', '.join(map(str, cfg.batch_sizes))}, {threads} thread(s), "
        f"{cfg.rounds} interleaved rounds of ~{cfg.min_time_s / cfg.rounds:.2g} s per point")
    if load is not None and load > cores / 2:
        say(f"warning: the machine is busy (load {load:.1f} on {cores} cores): timings will be noisy, and "
            f"multi-threaded torch suffers most; compare ratios within one run, or use --threads 1")
    on_devices = [(f, p) for f, p in todo if f.device]  # emulated: counted in instructions, not timed
    todo = [(f, p) for f, p in todo if not f.device]
    workers = start_workers(todo, cfg, threads, say)
    peaks: dict[str, float | None] = {}
    try:
        points = points_of(todo, cfg.batch_sizes)
        windows = measure(workers, points, cfg, say) if points else {}
    finally:
        for name, w in workers.items():
            peaks[name] = w.close()
    rows = build_rows(workers, windows, peaks)
    device_rows = _devices(on_devices, cfg, say)
    report = BenchReport(machine, rows, cfg.min_accuracy, time.perf_counter() - t0,
                         verdict(rows, windows) if rows else None, devices=device_rows, clock_mhz=cfg.clock_mhz)
    if cfg.write:
        report.files = write_reports(report, Path(cfg.artifacts), cfg.plot)
        say(f"wrote {', '.join(p.name for p in report.files)} in {cfg.artifacts}/")
    if old is not None:
        report.regressions = regressions(report, old)
    return report
