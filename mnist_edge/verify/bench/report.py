"""The bench report: one row per (format, batch size), its intervals, the verdict; bench.json, .md and .png."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mnist_edge.core.errors import MnistEdgeError
from mnist_edge.core.fileio import write_json, write_text, write_with
from mnist_edge.core.formats import CHECKPOINT, SPEED_REFERENCE
from mnist_edge.core.threads import load_average
from mnist_edge.verify.bench.stats import noisy, slower_than

REPORT_FILES = ("bench.json", "bench.md", "bench.png")
ACCURACY_REFERENCE = CHECKPOINT  # accuracy deltas are against eager PyTorch, the trained model


class AccuracyBelowMinimum(MnistEdgeError):
    """A format's accuracy is below --min-accuracy."""


class SlowerThanBaseline(MnistEdgeError):
    """A point got slower than in the --baseline run by more than both runs' intervals allow."""


@dataclass
class BenchRow:
    """One (format, batch size) point; format-wide values (accuracy, size, memory) repeat per row."""

    format: str
    batch_size: int
    latency_ms_p50: float
    latency_ms_p90: float
    latency_ms_p99: float
    p50_ci_ms: tuple[float, float]  # 95% interval of the p50, bootstrap over windows
    throughput_ips: float
    accuracy: float
    size_bytes: int
    load_ms: float  # cold: importing the runtime and loading the model in a fresh process
    peak_rss_mb: float  # of the worker process: runtime, model, test set and the timing runs
    latency_ms_mean: float = 0.0
    iterations: int = 0
    windows: int = 0
    accuracy_delta: float | None = None  # minus eager PyTorch's accuracy, as a fraction
    speedup: float | None = None  # the speed reference's p50 / this p50, same batch size and rounds
    speedup_ci: tuple[float, float] | None = None
    rss_after_load_mb: float | None = None
    torch_imported: bool = False
    threads: int = 0
    footprint: dict | None = None  # a microcontroller target's flash and RAM bytes, where it has them

    @property
    def noisy(self) -> bool:
        return noisy(self.latency_ms_p50, *self.p50_ci_ms)

    def to_json(self) -> dict:
        return {**asdict(self), "noisy": self.noisy}


@dataclass
class BenchReport:
    machine: dict
    results: list[BenchRow]
    min_accuracy: float | None = None
    seconds: float = 0.0
    verdict: dict | None = None  # the fastest format at the smallest batch, or a tie
    regressions: list[str] = field(default_factory=list)  # points slower than the --baseline run
    files: list[Path] = field(default_factory=list)
    devices: list[dict] = field(default_factory=list)  # emulated devices: instruction counts, flash, RAM
    clock_mhz: float | None = None  # the clock of the devices' time estimates

    def to_json(self) -> dict:
        return {"machine": self.machine, "results": [r.to_json() for r in self.results], "devices": self.devices,
                "min_accuracy": self.min_accuracy, "passed": not self.below_min_accuracy(),
                "verdict": self.verdict, "noisy_points": sum(r.noisy for r in self.results),
                "seconds": round(self.seconds, 1)}

    def formats(self) -> list[str]:
        return list(dict.fromkeys(r.format for r in self.results))

    def row(self, fmt: str, batch_size: int) -> BenchRow | None:
        return next((r for r in self.results if r.format == fmt and r.batch_size == batch_size), None)

    def first(self, fmt: str) -> BenchRow:
        return next(r for r in self.results if r.format == fmt)

    def below_min_accuracy(self) -> list[BenchRow]:
        """One row per format whose accuracy is below min_accuracy."""
        if self.min_accuracy is None:
            return []
        return [r for r in map(self.first, self.formats()) if r.accuracy < self.min_accuracy]

    def check_min_accuracy(self) -> None:
        """Raise AccuracyBelowMinimum (one line, exit 1) when any format is below min_accuracy."""
        low = self.below_min_accuracy()
        if low:
            worst = ", ".join(f"{r.format} {100 * r.accuracy:.2f}%" for r in low)
            raise AccuracyBelowMinimum(f"accuracy below --min-accuracy {100 * self.min_accuracy:.2f}%: {worst}")

    def check_baseline(self) -> None:
        """Raise SlowerThanBaseline (one line, exit 1) naming every point slower than the baseline run."""
        if self.regressions:
            raise SlowerThanBaseline("slower than the baseline beyond both runs' intervals: "
                                     + ", ".join(self.regressions))

    def summary(self) -> str:
        """The run's last line: the verdict and how many points were too noisy to trust."""
        v, n = self.verdict, sum(r.noisy for r in self.results)
        if not self.results:
            return "no host formats timed"
        if v is None:
            head = "one format measured"
        elif v["tie"]:
            head = (f"batch {v['batch_size']}: {v['fastest']} and {v['runner_up']} tie ({v['ratio']:.2f}x, "
                    f"95% interval {v['ci'][0]:.2f}-{v['ci'][1]:.2f}x)")
        else:
            head = (f"batch {v['batch_size']}: fastest {v['fastest']}, {v['ratio']:.2f}x {v['runner_up']} "
                    f"(95% interval {v['ci'][0]:.2f}-{v['ci'][1]:.2f}x)")
        noise = f"{n} of {len(self.results)} points noisy (p50 interval wider than ±10%, marked ~)" if n else \
            "every p50 within ±10% (95% interval)"
        return f"{head}; {noise}"

    def table(self) -> str:
        return markdown(self)


def machine_info(threads: int) -> dict:
    """Where the numbers were measured (without importing torch: versions from the installed metadata)."""
    import datetime
    import platform

    from mnist_edge.core.cpu import cpu_info, describe
    from mnist_edge.core.metadata import package_versions

    return {"cpu": describe(), "cpu_info": cpu_info(), "cores": os.cpu_count(), "threads": threads,
            "python": platform.python_version(),
            "platform": platform.platform(), **package_versions(installed=True),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "load_avg_1m": load_average()}


def regressions(report: BenchReport, baseline: dict) -> list[str]:
    """'format @batch' of every point slower than in a baseline bench.json beyond both intervals."""
    old = {(r["format"], r["batch_size"]): r for r in baseline.get("results", [])}
    slow = []
    for r in report.results:
        b = old.get((r.format, r.batch_size))
        if b and "p50_ci_ms" in b and slower_than((r.latency_ms_p50, *r.p50_ci_ms),
                                                 (b["latency_ms_p50"], *b["p50_ci_ms"])):
            slow.append(f"{r.format} @{r.batch_size} ({b['latency_ms_p50']:.3f} -> {r.latency_ms_p50:.3f} ms)")
    return slow


def read_baseline(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MnistEdgeError(f"{path}: no such baseline (a bench.json of an earlier run)") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise MnistEdgeError(f"{path}: not a bench.json ({type(e).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise MnistEdgeError(f"{path}: not a bench.json (no results)")
    return data


# --- bench.md -------------------------------------------------------------------------------------

def _fmt(v: float | None, spec: str, unit: str = "") -> str:
    return "–" if v is None else format(v, spec) + unit


def _p50(r: BenchRow) -> str:
    return f"{'~' if r.noisy else ''}{r.latency_ms_p50:.3f}"


def _speedup(r: BenchRow) -> str:
    if r.speedup is None:
        return "–"
    return f"{r.speedup:.2f}x ({r.speedup_ci[0]:.2f}-{r.speedup_ci[1]:.2f})"


def _footprint(r: BenchRow) -> str:
    fp = r.footprint or {}
    parts = [f"{k} {v / 1024:.1f} KB" for k, v in fp.items() if isinstance(v, (int, float))]
    return ", ".join(parts) if parts else ""


def markdown(report: BenchReport) -> str:
    """A summary table (smallest batch latency, largest batch throughput), then every point."""
    from mnist_edge.verify.bench import devices

    m = report.machine
    sizes = sorted({r.batch_size for r in report.results}) or [1]
    small, large = sizes[0], sizes[-1]
    lines = [
        f"mnist-edge bench: {m['cpu']}, {m['threads']} thread(s) of {m['cores']} cores, python {m['python']}, "
        f"torch {m.get('torch')}, onnxruntime {m.get('onnxruntime')}, {m['date']}",
        "",
        f"| Format | Size (MB) | Accuracy (%) | Δ acc (pts) | p50 ms @{small} (95% CI) | p99 ms @{small} | "
        f"images/s @{large} | speed-up vs {SPEED_REFERENCE} @{small} | load ms | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in report.formats():
        a, b = report.row(f, small), report.row(f, large)
        a = a or report.first(f)
        delta = _fmt(None if a.accuracy_delta is None else 100 * a.accuracy_delta, "+.2f")
        tput = f"{b.throughput_ips:,.0f}" if b else "–"
        lines.append(
            f"| {f} | {a.size_bytes / 1e6:.3f} | {100 * a.accuracy:.2f} | {delta} | {_p50(a)} "
            f"({a.p50_ci_ms[0]:.3f}-{a.p50_ci_ms[1]:.3f}) | {a.latency_ms_p99:.3f} | {tput} | {_speedup(a)} | "
            f"{a.load_ms:.0f} | {a.peak_rss_mb:.0f} |")
    lines += ["", "| Format | batch | p50 ms | 95% CI | p90 ms | p99 ms | images/s | speed-up | calls | windows |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report.results:
        lines.append(f"| {r.format} | {r.batch_size} | {_p50(r)} | {r.p50_ci_ms[0]:.3f}-{r.p50_ci_ms[1]:.3f} | "
                     f"{r.latency_ms_p90:.3f} | {r.latency_ms_p99:.3f} | {r.throughput_ips:,.0f} | {_speedup(r)} | "
                     f"{r.iterations} | {r.windows} |")
    if not report.results:  # only emulated devices were asked for: no host tables
        del lines[1:]
    micro = [(f, _footprint(report.first(f))) for f in report.formats() if _footprint(report.first(f))]
    if micro:
        lines += ["", "Microcontroller targets (host latency above is not device latency):"]
        lines += [f"- {f}: {fp}" for f, fp in micro]
    lines += devices.markdown(report.devices, report.clock_mhz)
    lines += ["", report.summary()]
    if report.min_accuracy is not None:
        low = report.below_min_accuracy()
        lines += ["", f"minimum accuracy {100 * report.min_accuracy:.2f}%: "
                  + ("all formats pass" if not low else "FAIL: " + ", ".join(r.format for r in low))]
    return "\n".join(lines) + "\n"


# --- bench.png ------------------------------------------------------------------------------------

def plot(report: BenchReport, dest: Path) -> None:
    """bench.png: p50 latency vs batch size per format (log axes, the 95% interval as a band), accuracy bars."""
    from mnist_edge.core.deps import require

    mpl = require("matplotlib")
    mpl.use("Agg")
    plt = require("matplotlib.pyplot")
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    for f in report.formats():
        rows = sorted((r for r in report.results if r.format == f), key=lambda r: r.batch_size)
        bs = [r.batch_size for r in rows]
        (line,) = ax.plot(bs, [r.latency_ms_p50 for r in rows], "o-", label=f)
        ax.fill_between(bs, [r.p50_ci_ms[0] for r in rows], [r.p50_ci_ms[1] for r in rows],
                        color=line.get_color(), alpha=0.25)
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="latency per batch (ms)",
           title="p50 latency (band: its 95% interval)")
    sizes = sorted({r.batch_size for r in report.results})
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    names = report.formats()
    acc = [100 * report.first(f).accuracy for f in names]
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
    if with_plot and report.results:
        plot(report, paths[2])
    return paths if with_plot and report.results else paths[:2]
