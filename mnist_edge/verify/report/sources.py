"""The result files of a run, read and checked: training, check, bench, tune, and where each was measured.

Only files are read (JSON and PNG): nothing here imports torch, onnx or matplotlib. A missing file is
None (its section says "not run"); a file that is there but unreadable or not what its writer writes is
one ReportError naming the file and the problem.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from mnist_edge.core.errors import MnistEdgeError

# The files each command writes into the artifacts folder (the writers' names; tests hold them equal).
METRICS = "metrics.json"  # mnist-edge train
TRAIN_FIGURES = ("graph.png", "graph2.png", "confusion_matrix.png", "samples.png", "filters.png", "feature_maps.png")
CHECK = "check.json"  # mnist-edge check
BENCH, BENCH_FIGURE = "bench.json", "bench.png"  # mnist-edge bench
TUNE, TUNE_FIGURES = "tune.json", ("tune.png", "tune_layers.png")  # mnist-edge tune
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ReportError(MnistEdgeError):
    """A result file or figure is unreadable or not what mnist-edge writes."""


class _Bad(Exception):
    """A field of a result file is missing or of the wrong type (the reader adds the file's name)."""


# --- typed access to parsed JSON ------------------------------------------------------------------

def _get(d: dict, key: str):
    if not isinstance(d, dict):
        raise _Bad(f"expected an object holding {key!r}")
    if key not in d:
        raise _Bad(f"no {key!r}")
    return d[key]


def _num(d: dict, key: str, default: object = ...) -> float | None:
    """A number (NaN allowed: a row that did not run), or `default` where the key is absent or null."""
    if default is not ... and (not isinstance(d, dict) or d.get(key) is None):
        return default
    v = _get(d, key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _Bad(f"{key!r} is not a number")
    return float(v)


def _str(d: dict, key: str, default: str | None = None) -> str | None:
    v = d.get(key) if isinstance(d, dict) else None
    if v is None:
        return default
    if not isinstance(v, str):
        raise _Bad(f"{key!r} is not text")
    return v


def _list(d: dict, key: str, default: list | None = None) -> list:
    v = d.get(key) if isinstance(d, dict) and default is not None else _get(d, key)
    if v is None:
        return list(default or [])
    if not isinstance(v, list):
        raise _Bad(f"{key!r} is not a list")
    return v


def _dict(d: dict, key: str) -> dict | None:
    v = d.get(key) if isinstance(d, dict) else None
    if v is not None and not isinstance(v, dict):
        raise _Bad(f"{key!r} is not an object")
    return v


def _load(path: Path, what: str) -> dict | None:
    """The JSON object in `path`, or None where there is no such file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: cannot be read ({getattr(e, 'strerror', None) or type(e).__name__})") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ReportError(f"{path}: not valid JSON ({str(e).splitlines()[0]}); run {what} again") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: not a {path.name} of {what} (not a JSON object)")
    return data


def _parsed(path: Path, what: str, parse):
    data = _load(path, what)
    if data is None:
        return None
    try:
        return parse(data, path)
    except _Bad as e:
        raise ReportError(f"{path}: not a {path.name} of {what} ({e}); run it again") from None
    except (ValueError, OverflowError) as e:  # int() of NaN or infinity where a count belongs
        raise ReportError(f"{path}: not a {path.name} of {what} ({e}); run it again") from None


# --- where and when ------------------------------------------------------------------------------

@dataclass
class Provenance:
    """Where a result file's numbers were measured: when, on which CPU, with which versions."""

    file: str
    date: str  # "2026-12-06 14:20 UTC"
    date_recorded: bool  # False: the file does not record its date; this is its modification time
    cpu_model: str | None
    cpu_kind: str | None
    features: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    load: float | None = None  # 1-minute load average at the start, where recorded

    @property
    def when(self) -> str:
        return self.date if self.date_recorded else f"{self.date} (file time)"

    @property
    def kind(self) -> str:
        return self.cpu_kind or "CPU kind not recorded"

    def short(self) -> str:
        """'2026-12-06, AVX-512 VNNI + BF16': what every number of the file carries."""
        return f"{self.date[:10]}{'' if self.date_recorded else ' (file time)'}, {self.kind}"

    def cpu(self) -> str:
        if self.cpu_model and self.cpu_kind:
            return f"{self.cpu_model} ({self.cpu_kind})"
        return self.cpu_model or self.cpu_kind or "CPU not recorded"

    def versions_text(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.versions.items()) or "versions not recorded"


# bench's `machine` (verify/bench/report.py machine_info): these keys say where; every other text value is a version
_NOT_VERSIONS = {"cpu", "cpu_info", "cores", "threads", "platform", "date", "load_avg_1m"}
_DESCRIBED = re.compile(r"^(?P<model>.*) \((?P<kind>[^()]*)\)$")  # core.cpu.describe(): "model (kind)"


def _format_date(iso: str) -> str | None:
    try:
        t = datetime.datetime.fromisoformat(iso)
    except ValueError:
        return None
    if t.tzinfo is not None:
        t = t.astimezone(datetime.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M") + (" UTC" if t.tzinfo is not None else "")


def provenance(data: dict, path: Path) -> Provenance:
    """Read the date, CPU and versions a result file records (bench.json's `machine`, or top-level `cpu`)."""
    # bench.json's `machine` is a record; the benchmark suite's files name the platform there (e.g. "x86_64")
    machine = data.get("machine") if isinstance(data.get("machine"), dict) else {}
    info = data.get("cpu") if isinstance(data.get("cpu"), dict) else machine.get("cpu_info")
    info = info if isinstance(info, dict) else {}
    described = data.get("cpu") if isinstance(data.get("cpu"), str) else machine.get("cpu")
    model, kind = info.get("model"), info.get("kind")
    if isinstance(described, str):
        m = _DESCRIBED.match(described)
        model = model or (m.group("model") if m else described)
        kind = kind or (m.group("kind") if m else None)
    date = machine.get("date") or data.get("date")
    shown = _format_date(date) if isinstance(date, str) else None
    if shown is None:
        mtime = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc)
        shown = mtime.strftime("%Y-%m-%d %H:%M UTC")
    versions = data.get("versions") if isinstance(data.get("versions"), dict) else {}
    versions = {**versions, **{k: v for k, v in machine.items() if k not in _NOT_VERSIONS and isinstance(v, str)}}
    features = info.get("features") if isinstance(info.get("features"), list) else []
    load = machine.get("load_avg_1m")
    return Provenance(path.name, shown, date is not None and _format_date(str(date)) is not None,
                      str(model) if model else None, str(kind) if kind else None,
                      [str(f) for f in features], {str(k): str(v) for k, v in versions.items()},
                      float(load) if isinstance(load, (int, float)) and not isinstance(load, bool) else None)


# --- figures -------------------------------------------------------------------------------------

@dataclass
class Figure:
    path: Path
    data: bytes
    width: int
    height: int


def figure(path: Path) -> Figure | None:
    """A PNG figure with its size from the IHDR chunk, or None where there is no such file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ReportError(f"{path}: cannot be read ({e.strerror or type(e).__name__})") from None
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ReportError(f"{path}: not a PNG image (a figure the run writes; run it again)")
    width, height = struct.unpack(">II", data[16:24])
    if not width or not height:
        raise ReportError(f"{path}: a PNG image of no pixels ({width}x{height})")
    return Figure(path, data, width, height)


# --- training ------------------------------------------------------------------------------------

@dataclass
class Training:
    source: Provenance
    arch: str
    dataset: str
    test_acc: float
    test_loss: float
    epochs: list[dict]  # epoch, train_loss, train_acc, test_loss, test_acc, seconds
    config: dict
    run: dict  # what the run trained with, where recorded: precision, device, threads
    figures: dict[str, Figure | None]


def _training(data: dict, path: Path) -> Training:
    epochs = []
    for row in _list(data, "epochs"):
        epochs.append({"epoch": int(_num(row, "epoch")), **{k: _num(row, k) for k in (
            "train_loss", "train_acc", "test_loss", "test_acc")}, "seconds": _num(row, "seconds", None),
                       "load": _num(row, "load_avg_1m", None)})
    if not epochs:
        raise _Bad("no epochs")
    config = _dict(data, "config") or {}
    run = {k: data[k] for k in ("precision", "device", "threads") if isinstance(data.get(k), (str, int))}
    figures = {name: figure(path.parent / name) for name in TRAIN_FIGURES}
    return Training(provenance(data, path), _str(data, "arch", "?"), _str(data, "dataset", "mnist"),
                    _num(data, "test_acc"), _num(data, "test_loss"), epochs, config, run, figures)


def read_training(folder: Path) -> Training | None:
    return _parsed(folder / METRICS, "mnist-edge train", _training)


# --- check ---------------------------------------------------------------------------------------

@dataclass
class CheckRow:
    format: str
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    accuracy: float
    accuracy_delta: float
    passed: bool
    failures: list[str]
    against: dict | None  # format, max_abs_diff, top1_agreement: against its reference sibling
    exact: dict | None  # bit_exact, max_abs_diff, why: against the int8 file's integer reference
    skipped: str | None  # a device row that did not run (its toolchain is missing)
    engine: str | None

    def bit_exact(self) -> str:
        """'yes (integer reference)', 'yes (onnx-int8)', 'no (...)', or '–' where nothing exact is asked."""
        if self.exact is not None:
            if self.exact.get("bit_exact"):
                return "yes (integer reference)"
            why = self.exact.get("why")
            return f"no: {why}" if why else f"no (max |Δ| {_e(self.exact.get('max_abs_diff'))})"
        if self.against is not None and isinstance(self.against.get("max_abs_diff"), (int, float)):
            name = self.against.get("format", "its reference")
            d = self.against["max_abs_diff"]
            return f"yes ({name})" if d == 0 else f"no ({name}: max |Δ| {_e(d)})"
        return "–"


def _e(v) -> str:
    return f"{v:.1e}" if isinstance(v, (int, float)) and math.isfinite(v) else "–"


@dataclass
class LayerRow:
    """One int8 layer's error against fp32 (check --per-layer, tune), most harmful first."""

    node: str
    op: str
    quantized: bool
    sqnr_db: float
    input_sqnr_db: float
    loss_db: float


def _layers(rows: list) -> list[LayerRow]:
    return [LayerRow(_str(r, "node") or "?", _str(r, "op") or "?", bool(r.get("quantized")), _num(r, "sqnr_db"),
                     _num(r, "input_sqnr_db"), _num(r, "loss_db")) for r in rows]


@dataclass
class Check:
    source: Provenance
    passed: bool
    reference_accuracy: float
    rows: list[CheckRow]
    per_layer: dict[str, list[LayerRow] | str] = field(default_factory=dict)  # int8 file: its layers, or why not


def _check(data: dict, path: Path) -> Check:
    rows = []
    for r in _list(data, "results"):
        rows.append(CheckRow(
            _str(r, "format") or "?", *(_num(r, k, math.nan) for k in (
                "max_abs_diff", "mean_abs_diff", "top1_agreement", "accuracy", "accuracy_delta")),
            bool(_get(r, "passed")), [str(f) for f in _list(r, "failures", [])], _dict(r, "against"),
            _dict(r, "exact"), _str(r, "skipped"), _str(r, "engine")))
    per_layer = {str(k): (_layers(v) if isinstance(v, list) else str(v))
                 for k, v in (_dict(data, "per_layer") or {}).items()}
    return Check(provenance(data, path), bool(_get(data, "passed")), _num(data, "reference_accuracy"), rows,
                 per_layer)


def read_check(folder: Path) -> Check | None:
    return _parsed(folder / CHECK, "mnist-edge check", _check)


# --- bench ---------------------------------------------------------------------------------------

@dataclass
class BenchPoint:
    format: str
    batch_size: int
    p50_ms: float
    p50_ci_ms: tuple[float, float]
    p99_ms: float
    throughput_ips: float
    accuracy: float
    accuracy_delta: float | None
    size_bytes: int
    load_ms: float | None
    peak_rss_mb: float | None
    speedup: float | None
    noisy: bool
    footprint: dict | None


@dataclass
class Bench:
    source: Provenance
    points: list[BenchPoint]
    threads: int | None
    cores: int | None
    verdict: dict | None
    devices: list[dict]  # emulated devices: instructions, flash and RAM, or why skipped
    figure: Figure | None

    def formats(self) -> list[str]:
        return list(dict.fromkeys(p.format for p in self.points))

    def batch_sizes(self) -> list[int]:
        return sorted({p.batch_size for p in self.points})

    def point(self, fmt: str, batch_size: int) -> BenchPoint | None:
        return next((p for p in self.points if p.format == fmt and p.batch_size == batch_size), None)

    def first(self, fmt: str) -> BenchPoint:
        return next(p for p in self.points if p.format == fmt)


def _pair(d: dict, key: str) -> tuple[float, float]:
    v = _get(d, key)
    if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v)):
        raise _Bad(f"{key!r} is not a pair of numbers")
    return float(v[0]), float(v[1])


def _bench(data: dict, path: Path) -> Bench:
    points = []
    for r in _list(data, "results"):
        points.append(BenchPoint(
            _str(r, "format") or "?", int(_num(r, "batch_size")), _num(r, "latency_ms_p50"), _pair(r, "p50_ci_ms"),
            _num(r, "latency_ms_p99"), _num(r, "throughput_ips"), _num(r, "accuracy"),
            _num(r, "accuracy_delta", None), int(_num(r, "size_bytes")), _num(r, "load_ms", None),
            _num(r, "peak_rss_mb", None), _num(r, "speedup", None), bool(r.get("noisy")), _dict(r, "footprint")))
    machine = _dict(data, "machine") or {}
    devices = [d for d in _list(data, "devices", []) if isinstance(d, dict)]
    threads, cores = machine.get("threads"), machine.get("cores")
    return Bench(provenance(data, path), points, threads if isinstance(threads, int) else None,
                 cores if isinstance(cores, int) else None, _dict(data, "verdict"), devices,
                 figure(path.parent / BENCH_FIGURE))


def read_bench(folder: Path) -> Bench | None:
    return _parsed(folder / BENCH, "mnist-edge bench", _bench)


# --- tune ----------------------------------------------------------------------------------------

@dataclass
class Candidate:
    name: str
    stage: str
    meets_budget: bool
    accuracy: float
    accuracy_delta: float
    top1_agreement: float
    size_bytes: int
    p50_ms: float | None  # at the deciding batch
    vs_default: float | None
    chosen: bool
    note: str


@dataclass
class Tune:
    source: Provenance
    max_drop_points: float
    batch: int
    threads: object
    reference_accuracy: float
    chosen: str
    written: str
    candidates: list[Candidate]
    derived: list[str]
    layers: list[LayerRow]  # of the written model
    figures: dict[str, Figure | None]


def _tune(data: dict, path: Path) -> Tune:
    settings = _get(data, "settings")
    batch = int(_num(settings, "batch"))
    candidates = []
    for c in _list(data, "candidates"):
        timing = (_dict(c, "timing") or {}).get(str(batch))
        vs = _dict(c, "vs_default")
        candidates.append(Candidate(
            _str(c, "name") or "?", _str(c, "stage", ""), bool(c.get("meets_budget")), _num(c, "accuracy"),
            _num(c, "accuracy_delta"), _num(c, "top1_agreement"), int(_num(c, "size_bytes")),
            _num(timing, "p50_ms", None) if isinstance(timing, dict) else None,
            _num(vs, "ratio", None) if vs else None, bool(c.get("chosen")),
            _str(c, "note", "") or "; ".join(map(str, _list(c, "failures", [])))))
    return Tune(provenance(data, path), _num(settings, "max_drop_points"), batch, settings.get("threads"),
                _num(data, "reference_accuracy"), _str(data, "chosen", "?"), _str(data, "written", "?"), candidates,
                [str(x) for x in _list(data, "derived", [])], _layers(_list(data, "layers", [])),
                {name: figure(path.parent / name) for name in TUNE_FIGURES})


def read_tune(folder: Path) -> Tune | None:
    return _parsed(folder / TUNE, "mnist-edge tune", _tune)


# --- the benchmark suite's own files (make bench, make bench-training) ----------------------------

EXTRAS = ("bench_train.json", "bench_small_data.json", "predict_cold_start.json", "serve_load.json")


@dataclass
class Extra:
    """One measured line of a benchmark file: what, the figure, and the file it came from."""

    source: Provenance
    what: str
    measured: str


def _ips(v: float) -> str:
    return f"{v:,.0f} images/s"


def _train_lines(d: dict) -> list[tuple[str, str]]:
    loops = _dict(d, "loops") or {k: d[k] for k in ("mnist_edge", "seed") if isinstance(d.get(k), dict)}
    if not loops:
        raise _Bad("no 'loops'")
    speeds = ", ".join(f"{name.replace('_', '-')} {_ips(_num(r, 'images_per_s'))}" for name, r in loops.items())
    by = (_dict(_dict(d, "default_run") or {}, "by_precision") or {})
    ratios = [f"{_num(r, 'ratio'):.2f}x ({p})" for p, r in by.items()] or (
        [f"{_num(d, 'ratio'):.2f}x"] if "ratio" in d else [])
    threads = f", {d['threads']} threads" if isinstance(d.get("threads"), int) else ""
    return [(f"training throughput, mnist-edge loop vs a seed-style loop{threads}",
             speeds + (f"; mnist-edge / seed: {', '.join(ratios)}" if ratios else ""))]


def _small_data_lines(d: dict) -> list[tuple[str, str]]:
    out = []
    for r in _list(d, "rows"):
        seeds = _dict(r, "seed_acc") or {}
        seed = ", ".join(f"seed {arch} {100 * _num(seeds, arch):.2f}%" for arch in seeds)
        out.append((f"small data: {_str(r, 'dataset')}, {int(_num(r, 'subset')):,} images x {int(_num(r, 'epochs'))} "
                    "epoch(s)", f"mnist-edge {100 * _num(r, 'mnist_edge_acc'):.2f}%" + (f"; {seed}" if seed else "")))
    return out


def _cold_start_lines(d: dict) -> list[tuple[str, str]]:
    return [("`mnist-edge predict digit.png` cold start (whole process)",
             f"{_num(d, 'wall_s_p50'):.2f} s wall (median of {int(_num(d, 'runs'))}), "
             f"{_num(d, 'peak_rss_mb'):.0f} MB peak RSS")]


def _serve_lines(d: dict) -> list[tuple[str, str]]:
    lat = _dict(d, "latency_ms") or {}
    p = ", ".join(f"{k} {_num(lat, k):.0f} ms" for k in ("p50", "p99") if k in lat)
    return [(f"`mnist-edge serve` under {int(_num(d, 'requests')):,} requests from {int(_num(d, 'clients'))} "
             f"clients, {int(_num(d, 'workers', 1))} worker(s)",
             f"{int(_num(d, 'failed'))} failed, {_num(d, 'req_per_s'):.1f} requests/s" + (f", {p}" if p else ""))]


_EXTRA_LINES = dict(zip(EXTRAS, (_train_lines, _small_data_lines, _cold_start_lines, _serve_lines), strict=True))


def read_extras(folder: Path) -> list[Extra]:
    """The lines of every benchmark-suite file present in `folder`, in EXTRAS order."""
    out: list[Extra] = []
    for name in EXTRAS:
        lines = _parsed(folder / name, "make bench",
                        lambda d, p, name=name: [Extra(provenance(d, p), *w) for w in _EXTRA_LINES[name](d)])
        out += lines or []
    return out
