"""The report as a document of sections (text, tables, figures), built once and rendered as HTML and Markdown.

Both renderings, and the README's results table, come from the same blocks, so a number reads the same
everywhere. Every section says which file its numbers came from, when and on which CPU; a table mixing
two runs (the summary) marks each column with the run it came from.
"""

from __future__ import annotations

import base64
import datetime
import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from mnist_edge.core.fileio import MB
from mnist_edge.core.settings import DEFAULT_ARTIFACTS
from mnist_edge.verify.report import sources as src
from mnist_edge.verify.report.sources import Bench, Check, Figure, LayerRow, Provenance, ReportError, Training, Tune

TRAIN_CAPTIONS = {
    "graph.png": "Loss and accuracy per epoch, train and test",
    "graph2.png": "Misclassified test images per test batch",
    "confusion_matrix.png": "Confusion matrix on the test set",
    "samples.png": "Test samples, mistakes first (red)",
    "filters.png": "First-layer filters",
    "feature_maps.png": "Feature maps of each conv layer for one test image",
}


@dataclass
class Text:
    text: str  # `code` spans in backticks


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    numeric: tuple[int, ...] = ()  # right-aligned columns
    notes: list[str] = field(default_factory=list)  # footnotes under the table
    folded: str | None = None  # HTML shows it folded under this line (a <details>, no script)


@dataclass
class Fig:
    figure: Figure
    caption: str


@dataclass
class Section:
    key: str
    title: str
    sources: list[Provenance] = field(default_factory=list)
    blocks: list = field(default_factory=list)
    not_run: str | None = None  # the command that makes this section's files


@dataclass
class Document:
    title: str
    folder: Path
    generated: str
    sections: list[Section]


# --- numbers -------------------------------------------------------------------------------------

def _pct(v: float | None) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{100 * v:.2f}%"


def _pts(v: float | None) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{100 * v:+.2f}"


def _sci(v: float | None) -> str:
    return "–" if v is None or not math.isfinite(v) else ("0" if v == 0 else f"{v:.1e}")


def _size(n: float | None) -> str:
    if n is None:
        return "–"
    return f"{n / MB:.2f} MB" if n >= MB else f"{n / 1024:.1f} KB"  # binary units, as fileio and the C footprints


def _kb(v) -> str:
    return f"{v / 1024:.1f} KB" if isinstance(v, (int, float)) and not isinstance(v, bool) else "–"


def _command(cmd: str, folder: Path, flag: str = "--artifacts") -> str:
    """`cmd` with the artifacts folder, left out where it is the default one."""
    return f"`{cmd}`" if str(folder) == DEFAULT_ARTIFACTS else f"`{cmd} {flag} {folder}`"


# --- the summary: one row per format -------------------------------------------------------------

def summary_table(check: Check | None, bench: Bench | None) -> Table:
    """Per format: accuracy, top-1 agreement, max |Δlogit|, bit-exact, p50 @smallest batch, images/s @largest, size."""
    if check is None and bench is None:
        raise ReportError("no check.json or bench.json to summarise (run `mnist-edge check` and `mnist-edge bench`)")
    c, b = ("¹", "²") if check and bench else ("", "")
    sizes = bench.batch_sizes() if bench else []
    small, large = (sizes[0], sizes[-1]) if sizes else (1, 256)
    header = ["format", f"accuracy{c or b}", f"top-1 agreement{c}", f"max \\|Δlogit\\|{c}", f"bit-exact{c}",
              f"p50 ms @{small}{b}", f"images/s @{large}{b}", f"size{b}"]
    rows_by: dict[str, list[str]] = {}
    if check:
        rows_by["pytorch"] = ["pytorch (reference)", _pct(check.reference_accuracy), "–", "–", "–"]
        for r in check.rows:
            if r.skipped:
                rows_by[r.format] = [r.format, "skipped", "–", "–", f"– ({r.skipped})"]
                continue
            fail = "" if r.passed else " (FAIL)"
            rows_by[r.format] = [r.format, _pct(r.accuracy) + fail, _pct(r.top1_agreement), _sci(r.max_abs_diff),
                                 r.bit_exact()]
    if bench:
        for f in bench.formats():
            first = bench.first(f)
            a, z = bench.point(f, small), bench.point(f, large)
            timed = [("~" if a.noisy else "") + f"{a.p50_ms:.3f}" if a else "–",
                     f"{z.throughput_ips:,.0f}" if z else "–", _size(first.size_bytes)]
            # a format check did not see: its accuracy is bench's, marked as such
            rows_by[f] = (rows_by.get(f) or [f, _pct(first.accuracy) + (b if check else ""), "–", "–", "–"]) + timed
    rows = [r + ["–"] * (len(header) - len(r)) for r in rows_by.values()]
    notes = []
    if check:
        notes.append(f"{c + ' accuracy, agreement, max |Δlogit| and bit-exact: ' if c else ''}"
                     f"`mnist-edge check` on all test images, {check.source.short()}")
    if bench:
        notes.append(f"{b + ' latency, throughput and size: ' if b else ''}`mnist-edge bench`, {bench.source.short()}"
                     + (", ~ marks a p50 whose 95% interval is wider than ±10%" if any(p.noisy for p in bench.points)
                        else ""))
    if not bench:
        notes.append("latency, throughput and size: not run (`mnist-edge bench` measures them)")
    if not check:
        notes.append("top-1 agreement, max |Δlogit| and bit-exact: not run (`mnist-edge check` measures them)")
    if check and bench and check.source.kind != bench.source.kind:
        notes.append(f"check and bench ran on different CPU kinds ({check.source.kind}; {bench.source.kind})")
    return Table(header, rows, numeric=(1, 2, 3, 5, 6, 7), notes=notes)


def readme_table(folder: Path) -> str:
    """The README's results table, in Markdown, from the folder's check.json and bench.json."""
    folder = Path(folder)
    _need_folder(folder)
    check, bench = src.read_check(folder), src.read_bench(folder)
    missing = [name for name, got in ((src.CHECK, check), (src.BENCH, bench)) if got is None]
    if missing:
        raise ReportError(f"{folder}: no {' or '.join(missing)} (the README's table needs a recorded "
                          f"`mnist-edge check` and `mnist-edge bench` run)")
    return _md_table(summary_table(check, bench))


# --- sections ------------------------------------------------------------------------------------

def _training(t: Training | None, folder: Path) -> Section:
    s = Section("training", "Training")
    if t is None:
        s.not_run = _command("mnist-edge train", folder, "--out")
        return s
    s.sources = [t.source]
    last = t.epochs[-1]
    total = sum(e["seconds"] or 0 for e in t.epochs)
    cfg = t.config
    recipe = ", ".join(f"{k} {cfg[k]}" for k in ("optimizer", "lr", "batch_size", "epochs", "seed", "augment",
                                                 "label_smoothing", "ema_steps") if k in cfg)
    ran = ", ".join(f"{k} {v}" for k, v in t.run.items())
    s.blocks.append(Text(" ".join(filter(None, [
        f"`{t.arch}` on {t.dataset}: test accuracy **{_pct(t.test_acc)}** (loss {t.test_loss:.4f}) after "
        f"{last['epoch']} epochs, {total:.0f} s of training.",
        f"Recipe: {recipe}." if recipe else "", f"Ran with {ran}." if ran else ""]))))
    s.blocks.append(Table(["epoch", "train loss", "train acc", "test loss", "test acc", "seconds", "load (1 min)"],
                          [[str(e["epoch"]), f"{e['train_loss']:.4f}", _pct(e["train_acc"]), f"{e['test_loss']:.4f}",
                            _pct(e["test_acc"]), "–" if e["seconds"] is None else f"{e['seconds']:.1f}",
                            "–" if e["load"] is None else f"{e['load']:.1f}"]
                           for e in t.epochs], numeric=(0, 1, 2, 3, 4, 5, 6), folded="Every epoch"))
    missing = [name for name, f in t.figures.items() if f is None]
    s.blocks += [Fig(f, TRAIN_CAPTIONS.get(name, name)) for name, f in t.figures.items() if f is not None]
    if missing:
        train = _command("mnist-edge train", folder, "--out")
        s.blocks.append(Text(f"Figures not written ({', '.join(missing)}): {train} with `--plots` writes them."))
    return s


def _check(c: Check | None, folder: Path) -> Section:
    s = Section("parity", "Parity with PyTorch (`mnist-edge check`)")
    if c is None:
        s.not_run = _command("mnist-edge check", folder)
        return s
    s.sources = [c.source]
    passed = sum(r.passed and not r.skipped for r in c.rows)
    skipped = sum(bool(r.skipped) for r in c.rows)
    s.blocks.append(Text(("Every format passes" if c.passed else "**Some formats FAIL**")
                         + f": {passed} of {len(c.rows) - skipped} pass"
                         + (f", {skipped} skipped" if skipped else "")
                         + f". PyTorch (the reference) scores {_pct(c.reference_accuracy)}."))
    rows = []
    for r in c.rows:
        if r.skipped:
            rows.append([r.format, "–", "–", "–", "–", "–", "–", f"skipped: {r.skipped}"])
            continue
        verdict = "pass" if r.passed else "FAIL: " + "; ".join(r.failures)
        if r.against:
            verdict += (f" (against {r.against.get('format')}: max |Δ| {_sci(r.against.get('max_abs_diff'))}, "
                        f"{_pct(r.against.get('top1_agreement'))})")
        if r.engine:
            verdict += f" [{r.engine}]"
        rows.append([r.format, _sci(r.max_abs_diff), _sci(r.mean_abs_diff), _pct(r.top1_agreement), _pct(r.accuracy),
                     _pts(r.accuracy_delta), r.bit_exact(), verdict])
    s.blocks.append(Table(["format", "max \\|Δlogit\\|", "mean \\|Δlogit\\|", "top-1 agreement", "accuracy",
                           "Δ acc (pts)", "bit-exact", "result"], rows, numeric=(1, 2, 3, 4, 5)))
    for name, layers in c.per_layer.items():
        if isinstance(layers, str):
            s.blocks.append(Text(f"`{Path(name).name}`: {layers}."))
        else:
            s.blocks.append(_layer_table(layers, f"Per-layer int8 error of {Path(name).name} against the fp32 model"))
    return s


def _layer_table(rows: list[LayerRow], title: str) -> Table:
    """Each int8 layer's output SQNR and what the layer itself lost, most harmful first (folded)."""
    return Table(["rank", "layer", "op", "int8", "SQNR dB", "input dB", "lost dB"],
                 [[str(i), r.node, r.op, "yes" if r.quantized else "fp32", f"{r.sqnr_db:.1f}", f"{r.input_sqnr_db:.1f}",
                   f"{r.loss_db:.1f}"] for i, r in enumerate(rows, 1)], numeric=(0, 4, 5, 6), folded=title)


def _verdict(v: dict | None) -> str | None:
    try:
        ratio, lo, hi = float(v["ratio"]), float(v["ci"][0]), float(v["ci"][1])
        if v.get("tie"):
            return (f"Batch {v['batch_size']}: {v['fastest']} and {v['runner_up']} tie ({ratio:.2f}x, "
                    f"95% interval {lo:.2f}-{hi:.2f}x).")
        return (f"Batch {v['batch_size']}: fastest **{v['fastest']}**, {ratio:.2f}x {v['runner_up']} "
                f"(95% interval {lo:.2f}-{hi:.2f}x).")
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _bench(b: Bench | None, folder: Path) -> Section:
    s = Section("bench", "Speed, size and accuracy (`mnist-edge bench`)")
    if b is None:
        s.not_run = _command("mnist-edge bench", folder)
        return s
    s.sources = [b.source]
    noisy = sum(p.noisy for p in b.points)
    how = f"{b.threads} thread(s) of {b.cores} cores" if b.threads and b.cores else "threads not recorded"
    load = f", load {b.source.load:g} at the start" if b.source.load is not None else ""
    s.blocks.append(Text(" ".join(filter(None, [
        _verdict(b.verdict), f"Timed with {how}{load}; p50 with its 95% interval (bootstrap over windows);",
        f"{noisy} of {len(b.points)} points noisy (interval wider than ±10%, marked ~)." if noisy else
        "every p50 within ±10%."]))))
    sizes = b.batch_sizes()
    if sizes:
        small, large = sizes[0], sizes[-1]
        rows = []
        for f in b.formats():
            a, z, first = b.point(f, small), b.point(f, large), b.first(f)
            a = a or first
            rows.append([f, _size(first.size_bytes), _pct(first.accuracy), _pts(first.accuracy_delta),
                         f"{'~' if a.noisy else ''}{a.p50_ms:.3f} ({a.p50_ci_ms[0]:.3f}-{a.p50_ci_ms[1]:.3f})",
                         f"{a.p99_ms:.3f}", f"{z.throughput_ips:,.0f}" if z else "–",
                         "–" if a.speedup is None else f"{a.speedup:.2f}x",
                         "–" if first.load_ms is None else f"{first.load_ms:.0f}",
                         "–" if first.peak_rss_mb is None else f"{first.peak_rss_mb:.0f}"])
        s.blocks.append(Table(["format", "size", "accuracy", "Δ acc (pts)", f"p50 ms @{small} (95% CI)",
                               f"p99 ms @{small}", f"images/s @{large}", f"speed-up @{small}", "load ms",
                               "peak RSS MB"], rows, numeric=tuple(range(1, 10))))
        s.blocks.append(Table(["format", "batch", "p50 ms", "95% CI", "p99 ms", "images/s"],
                              [[p.format, str(p.batch_size), f"{'~' if p.noisy else ''}{p.p50_ms:.3f}",
                                f"{p.p50_ci_ms[0]:.3f}-{p.p50_ci_ms[1]:.3f}", f"{p.p99_ms:.3f}",
                                f"{p.throughput_ips:,.0f}"] for p in b.points], numeric=(1, 2, 3, 4, 5)))
    if b.figure:
        s.blocks.append(Fig(b.figure, "p50 latency against batch size (band: 95% interval), and accuracy"))
    return s


def _footprints(b: Bench | None, c: Check | None, folder: Path) -> Section:
    s = Section("devices", "Device footprints")
    rows = []
    if b is not None:
        for f in b.formats():
            fp = b.first(f).footprint
            if fp:
                ram = fp.get("ram_bytes", fp.get("arena_bytes"))
                rows.append([f, str(fp.get("target", "–")), _kb(fp.get("flash_bytes")),
                             _kb(ram) + (" (arena)" if "arena_bytes" in fp and "ram_bytes" not in fp else ""),
                             _kb(fp.get("stack_bytes")), "–", str(fp.get("compiler", "–"))])
        for d in b.devices:
            if d.get("skipped"):
                rows.append([str(d.get("format", "?")), str(d.get("device", "–")), "–", "–", "–", "–",
                             f"skipped: {d['skipped']}"])
                continue
            ins, ms, mhz = d.get("instructions_mean"), d.get("ms_estimate"), d.get("clock_mhz")
            count = f"{ins / 1e6:.3f} M" if isinstance(ins, (int, float)) else "–"
            if isinstance(ms, (int, float)) and isinstance(mhz, (int, float)):
                count += f" (≈{ms:.1f} ms at {mhz:g} MHz)"
            core, board = d.get("core") or d.get("device"), d.get("board")
            where = f"{core} ({board})" if core and board else str(core or board or "–")
            rows.append([str(d.get("format", "?")), where,
                         _kb(d.get("flash_bytes")), _kb(d.get("ram_bytes")),
                         (f"{_kb(d['stack_used_bytes'])} used of " if d.get("stack_used_bytes") else "")
                         + _kb(d.get("stack_bytes")), count,
                         str(d.get("compiler", "–"))])
    skipped = [r for r in (c.rows if c else []) if r.skipped and r.format not in {row[0] for row in rows}]
    rows += [[r.format, "–", "–", "–", "–", "–", f"check skipped it: {r.skipped}"] for r in skipped]
    if not rows:
        s.not_run = (_command("mnist-edge bench", folder) + " with the C and TFLM exports (`c-int8`, `tflm-int8`) "
                     "and `arm-none-eabi-gcc` installed")
        return s
    s.sources = [p.source for p in (b, c if skipped else None) if p is not None]
    s.blocks.append(Text("Flash and RAM a microcontroller needs, from the linked or cross-compiled build; "
                         "instructions are counted on a core emulated in QEMU (not host time); a time at a clock "
                         "is an estimate from them at one instruction per cycle."))
    s.blocks.append(Table(["format", "target", "flash", "RAM", "stack", "instructions / inference", "built with"],
                          rows, numeric=(2, 3, 4, 5)))
    return s


def _tune(t: Tune | None, folder: Path) -> Section:
    s = Section("tune", "Int8 recipe search (`mnist-edge tune`)")
    if t is None:
        s.not_run = _command("mnist-edge tune", folder)
        return s
    s.sources = [t.source]
    s.blocks.append(Text(f"Chosen **{t.chosen}**, written to `{Path(t.written).name}`: the fastest recipe within "
                         f"{t.max_drop_points:g} points of PyTorch ({_pct(t.reference_accuracy)}) at batch {t.batch}, "
                         f"{t.threads} thread(s)."))
    for line in t.derived:
        s.blocks.append(Text(line))
    s.blocks.append(Table(
        ["candidate", "stage", "meets budget", "accuracy", "Δ (pts)", "agreement", "size", f"p50 ms @{t.batch}",
         "vs default", "note"],
        [[("**" + c.name + "**") if c.chosen else c.name, c.stage, "yes" if c.meets_budget else "no",
          _pct(c.accuracy), _pts(c.accuracy_delta), _pct(c.top1_agreement), _size(c.size_bytes),
          "–" if c.p50_ms is None else f"{c.p50_ms:.4f}", "–" if c.vs_default is None else f"{c.vs_default:.2f}x",
          c.note] for c in t.candidates], numeric=(3, 4, 5, 6, 7, 8)))
    if t.layers:
        s.blocks.append(_layer_table(t.layers, f"Per-layer int8 error of {Path(t.written).name}"))
    captions = {"tune.png": "Accuracy against latency of every timed candidate (Pareto front dashed)",
                "tune_layers.png": "Per-layer int8 error of the written model"}
    s.blocks += [Fig(f, captions.get(n, n)) for n, f in t.figures.items() if f is not None]
    return s


def _extras(extras: list[src.Extra]) -> Section:
    s = Section("suite", "Training, predict and serve benchmarks (`make bench`)")
    if not extras:
        s.not_run = "`make bench-training bench`"
        return s
    s.sources = list({e.source.file: e.source for e in extras}.values())
    s.blocks.append(Table(["what", "measured", "from"], [[e.what, e.measured, f"`{e.source.file}`, "
                                                           f"{e.source.short()}"] for e in extras]))
    return s


def _where(sources: list[Provenance]) -> Section:
    s = Section("where", "Where each result was measured")
    s.blocks.append(Table(["file", "date", "CPU", "features", "load", "versions"],
                          [[f"`{p.file}`", p.when, p.cpu(), ", ".join(p.features) or "–",
                            "–" if p.load is None else f"{p.load:g}", p.versions_text()] for p in sources]))
    return s


def _need_folder(folder: Path) -> None:
    if not folder.exists():
        raise ReportError(f"{folder}: no such folder (run `make all`, or `mnist-edge train --out {folder}` first)")
    if not folder.is_dir():
        raise ReportError(f"{folder}: not a folder")


def build(folder: Path) -> Document:
    """Read every result file of `folder` and lay out the report; raises ReportError on a bad file."""
    folder = Path(folder)
    _need_folder(folder)
    training, check, bench, tune = (src.read_training(folder), src.read_check(folder), src.read_bench(folder),
                                    src.read_tune(folder))
    extras = src.read_extras(folder)
    if not any((training, check, bench, tune, extras)):
        raise ReportError(f"{folder}: no results to report (none of {src.METRICS}, {src.CHECK}, {src.BENCH}, "
                          f"{src.TUNE}; run `make all`)")
    sections = []
    if check or bench:
        summary = Section("summary", "Results", [p.source for p in (check, bench) if p is not None],
                          [summary_table(check, bench)])
        sections.append(summary)
    sections += [_training(training, folder), _check(check, folder), _bench(bench, folder),
                 _footprints(bench, check, folder), _tune(tune, folder), _extras(extras)]
    files = [p.source for p in (training, check, bench, tune) if p is not None]
    sections.append(_where(files + list({e.source.file: e.source for e in extras}.values())))
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return Document(f"mnist-edge report: {folder}", folder, now, sections)


# --- Markdown ------------------------------------------------------------------------------------

def _md_cell(text: str) -> str:
    return text.replace("\n", " ").replace("|", "\\|").replace("\\\\|", "\\|")


def _md_table(t: Table) -> str:
    lines = ["| " + " | ".join(t.header) + " |",
             "|" + "|".join("---:" if i in t.numeric else "---" for i in range(len(t.header))) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
    if t.notes:
        lines += [""] + [n + "  " for n in t.notes[:-1]] + t.notes[-1:]
    return "\n".join(lines) + "\n"


def _md_source(p: Provenance) -> str:
    return f"From `{p.file}`: {p.when}, {p.cpu()}; {p.versions_text()}."


def markdown(doc: Document) -> str:
    """report.md: the same sections; figures are linked by file name (they sit beside it)."""
    out = [f"# {doc.title}", "", f"Generated {doc.generated} from the result files in `{doc.folder}`.", ""]
    for s in doc.sections:
        out += [f"## {s.title}", ""]
        if s.not_run:
            out += [f"Not run: {s.not_run} writes it.", ""]
            continue
        if s.key != "where":
            out += [line for p in s.sources for line in (_md_source(p), "")]
        for b in s.blocks:
            if isinstance(b, Text):
                out += [b.text, ""]
            elif isinstance(b, Table):
                out += ([f"{b.folded}:", ""] if b.folded else []) + [_md_table(b)]
            elif isinstance(b, Fig):
                out += [f"![{b.caption}]({b.figure.path.name})", ""]
    return "\n".join(out).rstrip() + "\n"


# --- HTML ----------------------------------------------------------------------------------------

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2329;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.25em;margin:0 0 8px}
nav{margin:10px 0 18px;font-size:.92em}nav a{margin-right:14px;color:#2457a6;text-decoration:none}
section{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:16px 20px;margin:0 0 18px}
.src{color:#5b6570;font-size:.86em;margin:0 0 10px}
.notrun{color:#8a5a00;background:#fff6e0;border-left:4px solid #e0a100;padding:8px 12px;margin:0}
.gen{color:#5b6570;font-size:.9em;margin:0}
.wrap{overflow-x:auto;margin:8px 0 12px}
table{border-collapse:collapse;font-size:.86em;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #e6e9ed;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#f0f2f5;font-weight:600;white-space:nowrap}td.n,th.n{text-align:right;white-space:nowrap}td:first-child,td:nth-child(2){white-space:nowrap}
tbody tr:hover{background:#f7f9fc}.notes{color:#5b6570;font-size:.84em;margin:2px 0 0}
.fail{color:#b3261e;font-weight:600}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:16px;align-items:start;margin:12px 0}
figure{margin:0;min-width:0}figure.wide{grid-column:1/-1}
details{margin:8px 0}summary{cursor:pointer;color:#2457a6}
figure img{max-width:100%;height:auto;border:1px solid #e6e9ed;background:#fff}
figcaption{color:#5b6570;font-size:.86em}
code{font:.9em ui-monospace,SFMono-Regular,Menlo,monospace;background:#f0f2f5;padding:1px 4px;border-radius:3px}
"""

WIDE_PX = 900  # a figure this wide (curves, samples, feature maps, bench) takes a whole row of the gallery

# The page asks for nothing: images are data: URIs, the style is inline, there is no script.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _inline(text: str) -> str:
    """Escape, then `code` and **bold** spans."""
    out = html.escape(text.replace("\\|", "|"), quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _html_table(t: Table) -> str:
    def cls(i: int) -> str:
        return ' class="n"' if i in t.numeric else ""

    head = "".join(f"<th{cls(i)}>{_inline(h)}</th>" for i, h in enumerate(t.header))
    body = []
    for row in t.rows:
        cells = []
        for i, c in enumerate(row):
            attr = ' class="fail"' if "FAIL" in c else cls(i)
            cells.append(f"<td{attr}>{_inline(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    notes = "".join(f'<p class="notes">{_inline(n)}</p>' for n in t.notes)
    out = f'<div class="wrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>{notes}'
    return f"<details><summary>{_inline(t.folded)}</summary>{out}</details>" if t.folded else out


def _html_figure(f: Fig) -> str:
    data = base64.b64encode(f.figure.data).decode("ascii")
    alt = html.escape(f.caption)
    wide = ' class="wide"' if f.figure.width >= WIDE_PX else ""
    size = f'width="{f.figure.width}" height="{f.figure.height}"'
    name = html.escape(f.figure.path.name)
    return (f'<figure{wide}><img src="data:image/png;base64,{data}" {size} alt="{alt}">'
            f"<figcaption>{alt} (<code>{name}</code>)</figcaption></figure>")


def _html_source(p: Provenance) -> str:
    return (f'<p class="src">From <code>{html.escape(p.file)}</code>: {html.escape(p.when)}, '
            f'{html.escape(p.cpu())}; {html.escape(p.versions_text())}</p>')


def render_html(doc: Document) -> str:
    """report.html: one self-contained page (inline CSS, figures as data: URIs, no script, no request)."""
    nav = "".join(f'<a href="#{s.key}">{_inline(s.title)}</a>' for s in doc.sections)
    parts = []
    for s in doc.sections:
        body = [f"<h2>{_inline(s.title)}</h2>"]
        if s.not_run:
            body.append(f'<p class="notrun">Not run: {_inline(s.not_run)} writes it.</p>')
        else:
            if s.key != "where":
                body += [_html_source(p) for p in s.sources]
            figs: list[str] = []  # consecutive figures share one gallery
            for b in [*s.blocks, None]:
                if isinstance(b, Fig):
                    figs.append(_html_figure(b))
                    continue
                if figs:
                    body.append(f'<div class="figs">{"".join(figs)}</div>')
                    figs = []
                if isinstance(b, Text):
                    body.append(f"<p>{_inline(b.text)}</p>")
                elif isinstance(b, Table):
                    body.append(_html_table(b))
        parts.append(f'<section id="{s.key}">{"".join(body)}</section>')
    title = html.escape(doc.title)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{title}</title><style>{CSS}</style></head>\n<body><main>"
            f'<h1>{title}</h1><p class="gen">Generated {doc.generated} from the result files in '
            f"<code>{html.escape(str(doc.folder))}</code>.</p><nav>{nav}</nav>\n"
            + "\n".join(parts) + "\n</main></body></html>\n")
