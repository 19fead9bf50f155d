"""`mnist-edge bench`: latency, throughput, accuracy, size, load time and memory of every format.

Each format runs in a worker process of its own (`python -m mnist_edge.bench --worker SPEC`) with
the same thread count: ONNX Runtime's spinning threads and torch's pool slow each other down when
they share a process (onnxruntime issue #13808), and a process per format makes its peak RSS its
own. Workers load models through `runtimes.load_runtime`, as check and predict do, and time
`rt.run(x)` on inputs normalised once, outside the timed part. An ONNX worker never imports torch.

The formats are the rows of `formats.FORMATS` whose file is in the artifacts folder: a format added
there is benchmarked with no change here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click
import numpy as np

from .errors import MnistEdgeError
from .fileio import write_json, write_text, write_with
from .formats import FORMATS, Format
from .ui import log, progress

DEFAULT_BATCH_SIZES = (1, 32, 256)
PERCENTILES = (50, 90, 99)
REFERENCE = "pytorch"  # accuracy deltas and speed-ups are against eager PyTorch
ACCURACY_BATCH = 256  # images per run() in the accuracy pass (not timed)
MAX_BATCH = 65536  # the exported ONNX models' batch axis goes up to here
REPORT_FILES = ("bench.json", "bench.md", "bench.png")


class BenchError(MnistEdgeError):
    """A benchmark could not run: nothing to benchmark, a bad option, or a worker that failed."""


class AccuracyBelowMinimum(MnistEdgeError):
    """A format's accuracy is below --min-accuracy."""


@dataclass
class BenchConfig:
    """What `mnist-edge bench` measures and how long it spends on each point."""

    artifacts: str | Path = "artifacts"  # model.pth and the exported models; the reports go here
    formats: tuple[str, ...] | None = None  # None: every format of FORMATS whose file is in artifacts
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    threads: int | None = None  # per format, the same for all; None: every core this process may use
    data_dir: str | None = None  # the test set (None: $MNIST_EDGE_DATA, then data/)
    min_accuracy: float | None = None  # fraction 0..1; see BenchReport.check_min_accuracy
    min_time_s: float = 1.0  # timing per (format, batch size): at least this long ...
    min_iters: int = 50  # ... and at least this many calls (p99 of 50 calls is still a tail),
    max_time_s: float = 5.0  # ... unless that takes longer than this (a slow format at a large batch)
    warmup_s: float = 0.2  # uncounted calls first: allocations, ORT's first-run planning, the JIT
    warmup_iters: int = 5
    write: bool = True  # bench.json, bench.md and bench.png in artifacts
    plot: bool = True  # bench.png (needs matplotlib)
    worker_timeout_s: float = 600.0  # a worker that hangs longer is stopped and reported


# --- statistics (pure, tested directly) ---------------------------------------------------------

def percentiles(samples: np.ndarray | list[float], qs: tuple[int, ...] = PERCENTILES) -> dict[int, float]:
    """{q: q-th percentile} of the samples (linear interpolation between order statistics)."""
    arr = np.asarray(samples, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("percentiles of no samples")
    return {q: float(v) for q, v in zip(qs, np.percentile(arr, qs))}


def throughput(batch_size: int, latencies_s: np.ndarray | list[float]) -> float:
    """Images per second when batches of `batch_size` run back to back with these latencies (s)."""
    total = float(np.sum(latencies_s))
    if total <= 0:
        raise ValueError("throughput of no time")
    return batch_size * len(latencies_s) / total


def speedup(reference_ms: float | None, ms: float | None) -> float | None:
    """How many times faster than the reference (>1: faster); None when either is unknown."""
    if not reference_ms or not ms:
        return None
    return reference_ms / ms


def time_calls(fn, x, min_time_s: float, min_iters: int, warmup_s: float = 0.0,
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
        return DEFAULT_BATCH_SIZES
    sizes = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            n = int(part)
        except ValueError:
            raise BenchError(f"--batch-sizes: {part!r} is not a whole number (e.g. 1,32,256)") from None
        sizes.append(n)
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


def selected_formats(cfg: BenchConfig) -> list[tuple[Format, Path]]:
    """(format, file) to benchmark, in table order; raises BenchError for anything a user got wrong."""
    art = Path(cfg.artifacts)
    if not art.is_dir():
        raise BenchError(f"{art}: no such folder (train and export first: `mnist-edge train`, "
                         "`mnist-edge export --quantize`)")
    if cfg.formats is None:
        found = [(f, art / f.filename) for f in FORMATS.values() if (art / f.filename).is_file()]
        if not found:
            raise BenchError(f"{art}: no models to benchmark (expected any of "
                             f"{', '.join(f.filename for f in FORMATS.values())})")
        return found
    if not cfg.formats:
        raise BenchError("--formats: no format given")
    unknown = [n for n in cfg.formats if n not in FORMATS]
    if unknown:
        raise BenchError(f"--formats: unknown format {unknown[0]!r} (known: {', '.join(FORMATS)})")
    missing = [FORMATS[n] for n in cfg.formats if not (art / FORMATS[n].filename).is_file()]
    if missing:
        raise BenchError(f"--formats {missing[0].name}: {art / missing[0].filename} not found "
                         "(export it first, or leave it out)")
    wanted = set(cfg.formats)
    return [(f, art / f.filename) for f in FORMATS.values() if f.name in wanted]


def _check_config(cfg: BenchConfig) -> None:
    _check_batch_sizes(cfg.batch_sizes)
    if cfg.threads is not None and cfg.threads < 1:
        raise BenchError(f"--threads must be at least 1, got {cfg.threads}")
    if cfg.min_accuracy is not None and not 0.0 <= cfg.min_accuracy <= 1.0:
        raise BenchError(f"--min-accuracy is a fraction 0..1 (e.g. 0.99), got {cfg.min_accuracy}")
    if cfg.min_time_s < 0 or cfg.min_iters < 1:
        raise BenchError("the timing budget must be >= 0 s and >= 1 call")


# --- the worker: one format, in its own process -------------------------------------------------

def _rss_mb() -> float | None:
    """Resident memory of this process now (Linux), in MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _peak_rss_mb() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KB elsewhere


def measure_format(spec: dict) -> dict:
    """Load one model, score it on the test set and time it at each batch size (runs in the worker)."""
    from .data import has_any_data, load_split, resolve_data_dir
    from .errors import DataError
    from .runtimes import load_runtime, run_batched

    path = Path(spec["path"])
    t0 = time.perf_counter()
    rt = load_runtime(path, spec["threads"])
    load_ms = 1e3 * (time.perf_counter() - t0)
    rss_loaded = _rss_mb()

    root = resolve_data_dir(spec.get("data_dir"))
    if not has_any_data(root, rt.metadata.dataset):  # no download from a worker: it would import torch
        raise DataError(f"{root}: no {rt.metadata.dataset} test set here (set --data-dir or MNIST_EDGE_DATA)")
    split = load_split(root, "test", rt.metadata.dataset)
    x = rt.metadata.normalize(split.images)  # (N, 1, 28, 28) float32, once, outside the timing
    logits = run_batched(rt, x, ACCURACY_BATCH)
    accuracy = float((logits.argmax(1) == split.labels).mean())

    points = []
    for bs in spec["batch_sizes"]:
        xb = batch_of(x, bs)
        lat = time_calls(rt.run, xb, spec["min_time_s"], spec["min_iters"], spec["warmup_s"],
                         spec["warmup_iters"], spec["max_time_s"])
        p = percentiles(lat * 1e3)
        points.append({"batch_size": bs, "latency_ms_p50": p[50], "latency_ms_p90": p[90],
                       "latency_ms_p99": p[99], "latency_ms_mean": float(lat.mean() * 1e3),
                       "throughput_ips": throughput(bs, lat), "iterations": len(lat)})
    return {
        "format": rt.format, "path": str(path), "size_bytes": path.stat().st_size, "load_ms": load_ms,
        "accuracy": accuracy, "test_images": len(split), "peak_rss_mb": _peak_rss_mb(),
        "rss_after_load_mb": rss_loaded, "torch_imported": "torch" in sys.modules,
        "threads": spec["threads"], "points": points,
    }


def _worker_main(spec_json: str) -> int:
    """Entry point of `python -m mnist_edge.bench --worker SPEC`: one JSON line on stdout."""
    import warnings

    warnings.filterwarnings("ignore")  # torch.jit / torch.ao deprecations: not the user's concern
    try:
        result = measure_format(json.loads(spec_json))
    except MnistEdgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except Exception as e:  # anything else a runtime raises: one line for the parent to report
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        print(f"error: {type(e).__name__}: {first}", file=sys.stderr)
        return 3
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


def run_worker(fmt: Format, path: Path, cfg: BenchConfig, threads: int) -> dict:
    """Measure one format in a fresh Python process; its failures become one-line BenchErrors."""
    spec = {"path": str(path), "threads": threads, "batch_sizes": list(cfg.batch_sizes),
            "data_dir": cfg.data_dir, "min_time_s": cfg.min_time_s, "min_iters": cfg.min_iters,
            "max_time_s": cfg.max_time_s, "warmup_s": cfg.warmup_s, "warmup_iters": cfg.warmup_iters}
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])  # so the worker imports this very package
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    cmd = [sys.executable, "-m", "mnist_edge.bench", "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=cfg.worker_timeout_s)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{fmt.name}: the benchmark worker did not finish in {cfg.worker_timeout_s:g} s "
                         "and was stopped") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        errors = [ln[len("error: "):] for ln in lines if ln.startswith("error: ")]
        why = errors[-1] if errors else (lines[-1][:200] if lines else "no message")
        how = f"exit {proc.returncode}" if proc.returncode > 0 else f"killed by signal {-proc.returncode}"
        raise BenchError(f"{fmt.name}: the benchmark worker failed ({how}): {why}")
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BenchError(f"{fmt.name}: the benchmark worker returned no result") from None
    result["format"] = fmt.name  # the table's name, even where the worker's runtime knows it otherwise
    return result


# --- the report ---------------------------------------------------------------------------------

@dataclass
class BenchRow:
    """One (format, batch size) point; format-wide values (accuracy, size, memory) repeat per row."""

    format: str
    batch_size: int
    latency_ms_p50: float
    latency_ms_p90: float
    latency_ms_p99: float
    throughput_ips: float
    accuracy: float
    size_bytes: int
    load_ms: float  # cold: importing the runtime and loading the model in a fresh process
    peak_rss_mb: float  # of the worker process: runtime, model, test set and the timing runs
    latency_ms_mean: float = 0.0
    iterations: int = 0
    accuracy_delta: float | None = None  # minus eager PyTorch's accuracy, as a fraction
    speedup_vs_pytorch: float | None = None  # eager PyTorch's p50 / this p50, same batch size
    rss_after_load_mb: float | None = None
    torch_imported: bool = False
    threads: int = 0

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class BenchReport:
    machine: dict
    results: list[BenchRow]
    min_accuracy: float | None = None
    seconds: float = 0.0
    files: list[Path] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"machine": self.machine, "results": [r.to_json() for r in self.results],
                "min_accuracy": self.min_accuracy, "passed": not self.below_min_accuracy(),
                "seconds": round(self.seconds, 1)}

    def formats(self) -> list[str]:
        return list(dict.fromkeys(r.format for r in self.results))

    def row(self, fmt: str, batch_size: int) -> BenchRow | None:
        return next((r for r in self.results if r.format == fmt and r.batch_size == batch_size), None)

    def below_min_accuracy(self) -> list[BenchRow]:
        """One row per format whose accuracy is below min_accuracy."""
        if self.min_accuracy is None:
            return []
        first = {f: next(r for r in self.results if r.format == f) for f in self.formats()}
        return [r for r in first.values() if r.accuracy < self.min_accuracy]

    def check_min_accuracy(self) -> None:
        """Raise AccuracyBelowMinimum (one line, exit 1) when any format is below min_accuracy."""
        low = self.below_min_accuracy()
        if low:
            worst = ", ".join(f"{r.format} {100 * r.accuracy:.2f}%" for r in low)
            raise AccuracyBelowMinimum(f"accuracy below --min-accuracy {100 * self.min_accuracy:.2f}%: {worst}")

    def table(self) -> str:
        return markdown(self)


def machine_info(threads: int) -> dict:
    """Where the numbers were measured (without importing torch: versions come from the installed metadata)."""
    import datetime
    import platform
    from importlib import metadata

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {}
    for dist in ("torch", "onnxruntime", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    from . import __version__

    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "python": platform.python_version(),
            "platform": platform.platform(), **versions, "mnist_edge": __version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "load_avg_1m": load_average()}


def load_average() -> float | None:
    """Runnable processes over the last minute (Unix): other work on the machine skews every timing."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def rows_of(result: dict) -> list[BenchRow]:
    keep = ("accuracy", "size_bytes", "load_ms", "peak_rss_mb", "rss_after_load_mb", "torch_imported", "threads")
    return [BenchRow(format=result["format"], **p, **{k: result[k] for k in keep}) for p in result["points"]]


def add_comparisons(rows: list[BenchRow]) -> None:
    """Fill accuracy_delta and speedup_vs_pytorch from the eager PyTorch rows, when it was measured."""
    ref = {r.batch_size: r for r in rows if r.format == REFERENCE}
    ref_acc = next(iter(ref.values())).accuracy if ref else None  # accuracy is per format, not per batch
    for r in rows:
        r.accuracy_delta = None if ref_acc is None else r.accuracy - ref_acc
        r.speedup_vs_pytorch = speedup(ref[r.batch_size].latency_ms_p50 if r.batch_size in ref else None,
                                       r.latency_ms_p50)


def run_bench(cfg: BenchConfig) -> BenchReport:
    """Benchmark every selected format in its own worker process; write the reports if cfg.write."""
    _check_config(cfg)
    todo = selected_formats(cfg)
    threads = cfg.threads or default_threads()
    t0 = time.perf_counter()
    rows: list[BenchRow] = []
    log(f"bench: {len(todo)} format(s) x batch {', '.join(map(str, cfg.batch_sizes))}, {threads} thread(s), "
        f"~{cfg.min_time_s:g} s per point, each format in its own process")
    machine = machine_info(threads)  # before the run: its date, and the load that others put on the machine
    load, cores = machine["load_avg_1m"], machine["cores"] or 1
    if load is not None and load > cores / 2:
        log(f"warning: the machine is busy (load {load:.1f} on {cores} cores): timings will be noisy, and "
            f"multi-threaded torch suffers most; compare ratios within one run, or use --threads 1")
    done: list[str] = []
    with progress(todo, "bench") as bar:
        on_tty = hasattr(bar, "label")  # a click progress bar: name the running format in its label
        for i, (fmt, path) in enumerate(bar, 1):
            if on_tty:
                bar.label = f"bench [{i}/{len(todo)}] {fmt.name}"
            else:
                click.echo(f"  [{i}/{len(todo)}] {fmt.name:<17}", err=True, nl=False)
            t = time.perf_counter()
            try:
                new = rows_of(run_worker(fmt, path, cfg, threads))
            except BenchError:
                if not on_tty:
                    click.echo("failed", err=True)  # end the status line before the error
                raise
            rows += new
            line = (f"accuracy {100 * new[0].accuracy:.2f}%  p50 {new[0].latency_ms_p50:.3f} ms "
                    f"@{new[0].batch_size}  {new[-1].throughput_ips:,.0f} img/s @{new[-1].batch_size}  "
                    f"peak RSS {new[0].peak_rss_mb:.0f} MB  ({time.perf_counter() - t:.1f} s)")
            if on_tty:
                done.append(f"  [{i}/{len(todo)}] {fmt.name:<17}{line}")
            else:
                click.echo(line, err=True)
    for line in done:  # after the bar, so that it does not garble them
        log(line)
    add_comparisons(rows)
    report = BenchReport(machine, rows, cfg.min_accuracy, time.perf_counter() - t0)
    if cfg.write:
        report.files = write_reports(report, Path(cfg.artifacts), cfg.plot)
    return report


# --- bench.json, bench.md, bench.png ------------------------------------------------------------

def _fmt(v: float | None, spec: str, unit: str = "") -> str:
    return "–" if v is None else format(v, spec) + unit


def markdown(report: BenchReport) -> str:
    """A `yolo benchmark`-style table (batch 1 latency, largest-batch throughput), then every point."""
    m = report.machine
    sizes = sorted({r.batch_size for r in report.results})
    small, large = sizes[0], sizes[-1]
    lines = [
        f"mnist-edge bench: {m['cpu']}, {m['threads']} thread(s) of {m['cores']} cores, python {m['python']}, "
        f"torch {m.get('torch')}, onnxruntime {m.get('onnxruntime')}, {m['date']}",
        "",
        f"| Format | Size (MB) | Accuracy (%) | Δ acc (pts) | p50 ms @{small} | p99 ms @{small} | "
        f"images/s @{large} | speed-up vs PyTorch @{small} | load ms | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in report.formats():
        a, b = report.row(f, small), report.row(f, large)
        delta = _fmt(None if a.accuracy_delta is None else 100 * a.accuracy_delta, "+.2f")
        lines.append(
            f"| {f} | {a.size_bytes / 1e6:.3f} | {100 * a.accuracy:.2f} | {delta} | {a.latency_ms_p50:.3f} | "
            f"{a.latency_ms_p99:.3f} | {b.throughput_ips:,.0f} | {_fmt(a.speedup_vs_pytorch, '.2f', 'x')} | "
            f"{a.load_ms:.0f} | {a.peak_rss_mb:.0f} |")
    lines += ["", "| Format | batch | p50 ms | p90 ms | p99 ms | images/s | speed-up vs PyTorch | calls |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report.results:
        lines.append(f"| {r.format} | {r.batch_size} | {r.latency_ms_p50:.3f} | {r.latency_ms_p90:.3f} | "
                     f"{r.latency_ms_p99:.3f} | {r.throughput_ips:,.0f} | {_fmt(r.speedup_vs_pytorch, '.2f', 'x')} | "
                     f"{r.iterations} |")
    if report.min_accuracy is not None:
        low = report.below_min_accuracy()
        lines += ["", f"minimum accuracy {100 * report.min_accuracy:.2f}%: "
                  + ("all formats pass" if not low else "FAIL: " + ", ".join(r.format for r in low))]
    return "\n".join(lines) + "\n"


def plot(report: BenchReport, dest: Path) -> None:
    """bench.png: p50 latency vs batch size per format (log axes, p90-p99 as a band), accuracy bars."""
    from .deps import require

    mpl = require("matplotlib")
    mpl.use("Agg")
    plt = require("matplotlib.pyplot")
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    for f in report.formats():
        rows = sorted((r for r in report.results if r.format == f), key=lambda r: r.batch_size)
        bs = [r.batch_size for r in rows]
        (line,) = ax.plot(bs, [r.latency_ms_p50 for r in rows], "o-", label=f)
        ax.fill_between(bs, [r.latency_ms_p90 for r in rows], [r.latency_ms_p99 for r in rows],
                        color=line.get_color(), alpha=0.15)
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="latency per batch (ms)",
           title="p50 latency (band: p90 to p99)")
    sizes = sorted({r.batch_size for r in report.results})
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    names = report.formats()
    acc = [100 * next(r.accuracy for r in report.results if r.format == f) for f in names]
    bars = bx.bar(range(len(names)), acc, color=[f"C{i}" for i in range(len(names))])
    bx.bar_label(bars, labels=[f"{a:.2f}" for a in acc], fontsize=8)
    lo = min(acc)
    bx.set_ylim(max(0.0, lo - max(1.0, (max(acc) - lo) * 2)), min(100.0, max(acc) + 0.5))
    bx.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    bx.set(ylabel="test accuracy (%)", title="accuracy on the test set")
    fig.suptitle(f"mnist-edge bench: {report.machine['cpu']}, {report.machine['threads']} thread(s)", fontsize=10)
    fig.tight_layout()
    write_with(dest, lambda tmp: fig.savefig(tmp, format="png", dpi=110), suffix=".png")
    plt.close(fig)


def write_reports(report: BenchReport, folder: Path, with_plot: bool = True) -> list[Path]:
    """bench.json, bench.md and (if with_plot) bench.png in folder, each written atomically."""
    paths = [folder / name for name in REPORT_FILES]
    write_json(paths[0], report.to_json())
    write_text(paths[1], markdown(report))
    if with_plot:
        plot(report, paths[2])
    else:
        paths = paths[:2]
    log(f"wrote {', '.join(p.name for p in paths)} in {folder}/")
    return paths


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(_worker_main(sys.argv[2]))
    sys.exit("usage: python -m mnist_edge.bench --worker SPEC_JSON (run by `mnist-edge bench`)")
