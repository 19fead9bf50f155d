"""The search of `mnist-edge tune`: int8 recipes made, verified on the test set, timed in rounds; the fastest kept.

1. Recipes, most promising first (QDQ or QOperator, per-channel or per-tensor weights, uint8 or int8
   activations, calibration method and size, the classifier head left in fp32), each made from the
   verified fp32 ONNX model, held to the parity bars with the accuracy drop capped at --max-drop, until
   most of the budget is spent.
2. When none meets the budget: the most harmful quantized layer (per-layer SQNR, layers.py) goes back to
   fp32 and the model is re-verified, until one does or every layer is fp32.
3. The candidates that meet it are timed at --batch in interleaved rounds with bench's workers, beside
   the default recipe and fp32 ONNX; the fastest gets session variants (graph optimization level,
   threads), timed the same way; the fastest of those is confirmed against the default recipe and
   fp32 in one last run (at --batch and at batch 256), then written through `export` (verify, then
   rename), and the formats made from it that are in the folder (C, web) are made again.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mnist_edge.core.cpu import cpu_info
from mnist_edge.core.errors import MnistEdgeError, first_line
from mnist_edge.core.fileio import MB, ensure_writable, size_of
from mnist_edge.core.formats import CHECKPOINT, FORMATS, MAX_BATCH, Format, load_checkpoint, present, resolve
from mnist_edge.core.progress import Reporter, Silent
from mnist_edge.core.settings import (
    DEFAULT_INT8_RECIPE,
    TUNE_FORMATS,
    BenchSettings,
    ExportSettings,
    Int8Recipe,
    TuneSettings,
)
from mnist_edge.pytorch.exporters import onnx_int8
from mnist_edge.verify.bench.report import BenchRow
from mnist_edge.verify.bench.run import Worker, build_rows, default_threads, measure
from mnist_edge.verify.bench.stats import ratio_interval
from mnist_edge.verify.parity import FormatResult, compare, reference
from mnist_edge.verify.tune.layers import LayerError, layer_errors

INT8 = FORMATS[TUNE_FORMATS[0]]  # the registry's tunable int8 row (ONNX Runtime quantization) ...
FP32 = FORMATS[INT8.source]  # ... and the verified fp32 file its recipes are applied to
DEFAULT, FP32_REF = "default", FP32.name  # the reference points of every timing run (bench's speed reference)
MAKE_SHARE = 0.6  # of the budget, for making candidates; the timing runs and the write take the rest


def right_on(path: Path) -> str:
    """Where ONNX Runtime computes the int8 file's exact integer result (quant/reference.py)."""
    from mnist_edge.quant.reference import SEVEN_BITS, load, widest_weight

    try:
        widest = widest_weight(load(path).program)
    except MnistEdgeError:  # a graph outside the integer program (fp32 layers): no exact reference
        return "no integer reference (fp32 layers)"
    return "every CPU" if widest <= SEVEN_BITS else "x86 with VNNI and ARM (AVX2-only x86 saturates)"


class TuneError(MnistEdgeError):
    """tune could not run, or found no int8 model within the budget."""


def recipe_plan(layers: list[str], ops: dict[str, str]) -> list[Int8Recipe]:
    """The recipes tried, most promising first: the default, then one or two changes each.

    Not tried: QOperator with int8 activations (S8S8 QLinearConv), which ONNX Runtime warns is slow on x64
    (measured here: verifying it took 60 s, against 5 s for the others), and dynamic quantization, whose
    ConvInteger is 4x slower than fp32 (see `export --quantize-mode`).
    """
    d = replace(DEFAULT_INT8_RECIPE, name=DEFAULT)
    heads = tuple(n for n in layers if ops.get(n) in ("Gemm", "MatMul"))
    plan = [
        d,
        replace(d, name="qoperator", form="qoperator"),
        replace(d, name="per-tensor", per_channel=False),
        replace(d, name="qoperator-per-tensor", form="qoperator", per_channel=False),
        replace(d, name="int8-activations", activations="int8", symmetric_activations=True),
        replace(d, name="entropy", calibration="entropy"),
        replace(d, name="percentile", calibration="percentile"),
        replace(d, name="minmax-1000", calibration_images=1000),
        replace(d, name="percentile-1000", calibration="percentile", calibration_images=1000),
        # 8-bit weights: right only where ONNX Runtime sums int8 products in int32 (x86 with VNNI, ARM)
        replace(d, name="8-bit-weights", reduce_range=False),
    ]
    if heads:
        plan.insert(4, replace(d, name="fp32-head", exclude=heads))
    return plan


@dataclass
class Candidate:
    recipe: Int8Recipe
    path: Path
    stage: str  # "recipe" | "fallback" | "session"
    parity: FormatResult
    size_bytes: int
    make_s: float
    note: str = ""
    right_on: str = "every CPU"  # where ONNX Runtime computes this file's exact integer result
    timing: dict[int, BenchRow] = field(default_factory=dict)  # by batch size, from the candidate's stage
    vs_default: tuple[float, float, float] | None = None  # (times faster than the default recipe, 95% interval)
    chosen: bool = False

    @property
    def name(self) -> str:
        return self.recipe.name

    @property
    def passed(self) -> bool:
        return self.parity.passed

    def p50(self, batch: int) -> float:
        row = self.timing.get(batch)
        return row.latency_ms_p50 if row else float("inf")

    def to_json(self) -> dict:
        p = self.parity
        return {"name": self.name, "stage": self.stage, "recipe": self.recipe.to_dict(),
                "describe": self.recipe.describe(), "meets_budget": self.passed, "failures": p.failures,
                "accuracy": p.accuracy, "accuracy_delta": p.accuracy_delta, "top1_agreement": p.top1_agreement,
                "max_abs_diff": p.max_abs_diff, "size_bytes": self.size_bytes, "make_s": round(self.make_s, 2),
                "note": self.note, "right_on": self.right_on, "chosen": self.chosen,
                "timing": {str(b): _timing_json(r) for b, r in self.timing.items()},
                "vs_default": None if self.vs_default is None else
                {"ratio": self.vs_default[0], "ci": list(self.vs_default[1:])}}


def _timing_json(r: BenchRow) -> dict:
    return {"p50_ms": r.latency_ms_p50, "p50_ci_ms": list(r.p50_ci_ms), "p99_ms": r.latency_ms_p99,
            "throughput_ips": r.throughput_ips, "threads": r.threads, "windows": r.windows,
            "calls": r.iterations, "vs_fp32": r.speedup, "vs_fp32_ci": list(r.speedup_ci or ())}


@dataclass
class TuneResult:
    settings: dict
    reference_accuracy: float
    candidates: list[Candidate]
    skipped: list[str]  # recipes not tried: over budget
    chosen: Candidate
    final: dict  # the last run: chosen, default recipe and fp32 at --batch and the throughput batch
    layers: list[LayerError]  # of the written model
    excluded: list[str]  # layers the fallback put back to fp32
    derived: list[str]  # lines on the formats made again from the written model
    written: Path
    seconds: float = 0.0
    files: list[Path] = field(default_factory=list)

    def to_json(self) -> dict:
        import datetime

        return {"settings": self.settings, "cpu": cpu_info(),
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "reference_accuracy": self.reference_accuracy,
                "chosen": self.chosen.name, "recipe": self.chosen.recipe.to_dict(), "written": str(self.written),
                "final": self.final, "excluded": self.excluded, "derived": self.derived,
                "skipped": self.skipped, "seconds": round(self.seconds, 1),
                "candidates": [c.to_json() for c in self.candidates],
                "layers": [r.to_json() for r in self.layers]}


def check_settings(cfg: TuneSettings) -> None:
    if not cfg.max_drop >= 0:
        raise TuneError(f"--max-drop is in accuracy points and cannot be negative, got {cfg.max_drop}")
    if not 1 <= cfg.batch <= MAX_BATCH:
        raise TuneError(f"--batch must be between 1 and {MAX_BATCH}, got {cfg.batch}")
    if cfg.threads is not None and cfg.threads < 1:
        raise TuneError(f"--threads must be at least 1, got {cfg.threads}")
    if not cfg.budget_minutes > 0:
        raise TuneError(f"--budget-minutes must be positive, got {cfg.budget_minutes}")
    if not cfg.formats:
        raise TuneError("--formats: no format given")
    if cfg.recipes is not None:
        known = [r.name for r in recipe_plan(["conv", "head"], {"head": "Gemm"})]
        bad = [n for n in cfg.recipes if n not in known]
        if bad:
            raise TuneError(f"--recipes: unknown recipe {bad[0]!r} (known: {', '.join(known)})")
    other = [f for f in cfg.formats if f not in TUNE_FORMATS]
    if other:
        known = "" if other[0] in FORMATS else "unknown format; "
        raise TuneError(f"--formats {other[0]}: {known}tune searches int8 recipes for {', '.join(TUNE_FORMATS)} "
                        "only (ExecuTorch and LiteRT int8 keep the recipe of `export --quantize`)")


class _Search:
    """The state of one tune run: the reference, the calibration images and the candidates made."""

    def __init__(self, cfg: TuneSettings, progress: Reporter, work: Path):
        from mnist_edge.verify.export import calibration_images

        self.cfg, self.progress, self.work = cfg, progress, work
        self.art = Path(cfg.artifacts)
        self.src = self.art / FP32.filename
        FP32.load(self.src)  # missing, corrupt or not ours: one line, before any work
        self.ref_rt = load_checkpoint(self.art / FORMATS[CHECKPOINT].filename)
        self.meta = self.ref_rt.metadata
        drop = min(cfg.tolerances.int8_max_accuracy_drop, cfg.max_drop / 100)
        self.tol = replace(cfg.tolerances, int8_max_accuracy_drop=drop)
        self._calibration = lambda n: calibration_images(self.export_settings(n), self.meta)
        self._cache: dict[int, np.ndarray] = {}
        images, test_split = self._calibration(DEFAULT_INT8_RECIPE.calibration_images)
        self._cache[len(images)] = images
        progress.log(f"tune: reference {self.ref_rt.path} on {len(test_split):,} test images")
        self.ref = reference(self.ref_rt, test_split)
        self.pre = work / "pre.onnx"
        onnx_int8.preprocess(self.src, self.pre)
        import onnx

        nodes = onnx.load_model(str(self.pre)).graph.node
        self.ops = {n.name: n.op_type for n in nodes}
        self.layers = onnx_int8.layer_names(self.pre)
        self.threads = cfg.threads or default_threads()
        self.made: list[Candidate] = []

    def export_settings(self, n: int, recipe: Int8Recipe | None = None) -> ExportSettings:
        return ExportSettings(checkpoint=self.art / FORMATS[CHECKPOINT].filename, out=self.art, format=INT8.family,
                              quantize=True, calibration_samples=n, data_dir=self.cfg.data_dir,
                              tolerances=self.tol, int8_recipe=recipe)

    def calibration(self, n: int) -> np.ndarray:
        if n not in self._cache:
            self._cache[n] = self._calibration(n)[0]
        return self._cache[n]

    def verify(self, path: Path) -> FormatResult:
        return compare(self.ref, INT8.load(path), INT8, self.tol)

    def make(self, recipe: Int8Recipe, stage: str, note: str = "") -> Candidate:
        """Quantize with `recipe` into the work folder and verify it on the test set."""
        t0 = time.perf_counter()
        path = self.work / f"candidate-{len(self.made)}.onnx"
        try:
            onnx_int8.write(self.src, path, self.calibration(recipe.calibration_images), recipe, self.meta,
                            pre=self.pre)
        except MnistEdgeError:
            raise
        except Exception as e:  # the quantizer's own failures: the candidate fails, the search goes on
            fail = FormatResult(INT8.name, str(path), 0.0, float("nan"), 0.0, float("nan"), float("nan"), False,
                                failures=[f"not made: {first_line(e, 160)}"])
            cand = Candidate(recipe, path, stage, fail, 0, time.perf_counter() - t0, note)
        else:
            cand = Candidate(recipe, path, stage, self.verify(path), size_of(path), time.perf_counter() - t0, note,
                             right_on(path))
        self.made.append(cand)
        p = cand.parity
        verdict = "meets the budget" if cand.passed else "; ".join(p.failures)
        self.progress.log(f"  {recipe.name:<28} accuracy {100 * p.accuracy:.2f}% ({100 * p.accuracy_delta:+.2f}), "
                          f"agreement {100 * p.top1_agreement:.2f}%: {verdict}")
        return cand

    def session_variant(self, base: Candidate, level: str, threads: int | None) -> Candidate:
        """The same int8 file with other session options in its recipe, verified again."""
        t0 = time.perf_counter()
        recipe = replace(base.recipe, name=f"{base.name}+graph-{level}+{threads or 'all'}-threads",
                         graph_optimization=level, threads=threads)
        path = self.work / f"candidate-{len(self.made)}.onnx"
        meta = onnx_int8.metadata_of(self.meta, recipe, recipe.calibration_images)
        onnx_int8.restamp(base.path, path, meta)
        cand = Candidate(recipe, path, "session", self.verify(path), size_of(path), time.perf_counter() - t0,
                         right_on=base.right_on)
        self.made.append(cand)
        return cand

    def fall_back(self, start: Candidate) -> list[Candidate]:
        """Put the most harmful quantized layer back to fp32 until the budget is met or none is left."""
        out, cur = [], start
        images = self.calibration(self.cfg.layer_images)
        while not cur.passed:
            rows = [r for r in layer_errors(cur.path, self.src, images)
                    if r.quantized and r.node not in cur.recipe.exclude]
            if not rows:
                break
            worst = rows[0]
            self.progress.log(f"  fallback: {worst.node} ({worst.op}) back to fp32, it loses "
                              f"{worst.loss_db:.1f} dB (output SQNR {worst.sqnr_db:.1f} dB)")
            recipe = replace(cur.recipe, name=f"{start.name}+fp32:{worst.node}", exclude=(*cur.recipe.exclude,
                                                                                         worst.node))
            cur = self.make(recipe, "fallback", note=f"{worst.node} back to fp32 (lost {worst.loss_db:.1f} dB)")
            out.append(cur)
        return out

    def time_in_rounds(self, cands: list[Candidate], default: Candidate, batches: tuple[int, ...], min_time_s: float,
             label: str) -> dict:
        """Time the candidates, the default recipe and fp32 ONNX in one interleaved run; fill their timing."""
        bcfg = BenchSettings(artifacts=self.art, data_dir=self.cfg.data_dir, rounds=self.cfg.rounds,
                             min_time_s=min_time_s, min_iters=2 * self.cfg.rounds, max_time_s=3 * min_time_s,
                             warmup_s=0.1, write=False, plot=False)
        entries: dict[str, tuple[Format, Path, int]] = {
            FP32_REF: (FP32, self.src, self.threads), DEFAULT: (INT8, default.path, self.threads)}
        for c in cands:
            entries.setdefault(c.name, (INT8, c.path, c.recipe.threads or self.threads))
        self.progress.log(f"tune: timing {label}: {len(entries)} models x batch {', '.join(map(str, batches))}, "
                          f"{self.cfg.rounds} interleaved rounds")
        workers: dict[str, Worker] = {}
        peaks: dict[str, float | None] = {}
        try:
            for name, (fmt, path, threads) in entries.items():
                workers[name] = Worker(fmt, path, bcfg, threads)
            points = [(n, b) for n in entries for b in batches]
            windows = measure(workers, points, bcfg, lambda line: None)
        finally:
            for name, w in workers.items():
                peaks[name] = w.close()
        rows = {(r.format, r.batch_size): r for r in build_rows(workers, windows, peaks)}
        by_name = {c.name: c for c in [default, *cands]}
        for c in by_name.values():
            c.timing.update({b: rows[(c.name, b)] for b in batches})
            c.vs_default = ratio_interval(windows[(c.name, batches[0])], windows[(DEFAULT, batches[0])])
        out: dict[str, dict] = {}
        for b in batches:
            out[str(b)] = {}
            for n in entries:
                point = _timing_json(rows[(n, b)])
                r, lo, hi = ratio_interval(windows[(n, b)], windows[(DEFAULT, b)])
                point.update(vs_fp32=rows[(n, b)].speedup or 1.0, vs_default=r, vs_default_ci=[lo, hi])
                out[str(b)][n] = point
        return {"batches": list(batches), "threads": self.threads, "points": out}


def _derived_present(art: Path, say: Callable[[str], None]) -> list[Format]:
    """Formats in the folder that are made from the int8 ONNX file (C, web) and can be made again here."""
    out = []
    for f, _ in present(art):
        if f.source != INT8.name or not f.exporter:
            continue
        why = f.unavailable()
        if why:
            say(f"tune: {f.name} is made from {INT8.filename} but cannot be made again here ({why}): "
                "`check` fails on the old one until it is")
        else:
            out.append(f)
    return out


def _derived_problem(s: _Search, cand: Candidate, derived: list[Format]) -> str | None:
    """Why a format in the folder could not be made from this candidate (a dry run of its exporter), or None."""
    from mnist_edge.pytorch.exporters.job import ExportJob

    for f in derived:
        job = ExportJob(s.ref_rt.model, s.meta, s.export_settings(cand.recipe.calibration_images),
                        sources={INT8.name: cand.path})
        tmp = Path(tempfile.mkdtemp(prefix="derived-", dir=s.work))
        try:
            resolve(f.exporter)(job, f, tmp)
        except Exception as e:  # its exporter refuses what it cannot reproduce: one line
            return f"{f.name} cannot be made from it ({first_line(e, 160)})"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return None


def _write(s: _Search, chosen: Candidate, derived: list[Format]) -> tuple[Path, list[str]]:
    """The chosen recipe through export (verify, then rename), then the formats made from it, again."""
    from mnist_edge.pytorch.exporters.job import ExportJob
    from mnist_edge.verify.export import export_one

    r = chosen.recipe
    job = ExportJob(s.ref_rt.model, s.meta, s.export_settings(r.calibration_images, r),
                    s.calibration(r.calibration_images), {FP32.name: s.src})
    done = export_one(job, INT8, s.ref)
    job.sources[INT8.name] = done.path
    lines = []
    for f in derived:
        try:
            again = export_one(job, f, s.ref)
            lines.append(f"{f.name}: made again from it ({again.path})")
        except MnistEdgeError as e:
            lines.append(f"{f.name}: NOT made again ({e}); `check` fails on the old one until it is re-exported")
    return done.path, lines


def tune(cfg: TuneSettings, progress: Reporter | None = None) -> TuneResult:
    """Search int8 recipes for the fastest model within cfg.max_drop points; write it and the reports."""
    progress = progress or Silent()
    check_settings(cfg)
    art = Path(cfg.artifacts)
    if not art.is_dir():
        raise TuneError(f"{art}: no such folder (train and export first: `mnist-edge train`, "
                        "`mnist-edge export --format onnx`)")
    ensure_writable(art, 4 * MB, "the tuned model and the tune reports")  # refuse before the work
    t0 = time.perf_counter()
    deadline = t0 + 60 * cfg.budget_minutes * MAKE_SHARE
    with tempfile.TemporaryDirectory(prefix="mnist-edge-tune-") as work:
        s = _Search(cfg, progress, Path(work))
        plan = [replace(r, threads=cfg.threads) for r in recipe_plan(s.layers, s.ops)
                if cfg.recipes is None or r.name in cfg.recipes or r.name == DEFAULT]
        skipped = []
        progress.log(f"tune: up to {len(plan)} recipes, each verified on the test set "
                     f"(budget: accuracy drop <= {cfg.max_drop:g} points, agreement >= "
                     f"{100 * s.tol.int8_min_agreement:.2f}%)")
        with progress.steps(plan, "tune: candidates") as steps:
            for recipe in steps:
                if time.perf_counter() > deadline:
                    skipped.append(recipe.name)
                    continue
                s.make(recipe, "recipe")
        default = s.made[0]
        excluded: list[str] = []
        passing = [c for c in s.made if c.passed]
        if not passing:
            start = max(s.made, key=lambda c: (c.parity.top1_agreement, c is default))
            progress.log(f"tune: no recipe meets the budget; layer fallback from {start.name}")
            steps_back = s.fall_back(start)
            passing = [c for c in steps_back if c.passed]
            if not passing:
                last = steps_back[-1] if steps_back else start
                raise TuneError(f"no int8 model loses at most {cfg.max_drop:g} points, even with every layer in "
                                f"fp32: {'; '.join(last.parity.failures)}")
            excluded = list(passing[0].recipe.exclude)
        s.time_in_rounds(passing, default, (cfg.batch,), cfg.min_time_s, "the recipes that meet the budget")
        derived = _derived_present(art, progress.log)
        ranked = sorted(passing, key=lambda c: c.p50(cfg.batch))
        best = None
        for c in ranked:
            problem = _derived_problem(s, c, derived) if derived else None
            if problem is None:
                best = c
                break
            c.note = (c.note + "; " if c.note else "") + f"not chosen: {problem}"
            progress.log(f"  {c.name}: not chosen, {problem}")
        if best is None:
            raise TuneError("every recipe within the budget breaks a format made from it: "
                            + "; ".join(c.note for c in ranked))
        thread_opts = [cfg.threads] if cfg.threads else [None, 1] if s.threads > 1 else [None]
        variants = [s.session_variant(best, lv, t) for lv in ("basic", "extended", "all") for t in thread_opts
                    if (lv, t) != ("all", best.recipe.threads)]
        ok = [v for v in variants if v.passed]
        if ok:
            s.time_in_rounds([best, *ok], default, (cfg.batch,), cfg.min_time_s, f"session options of {best.name}")
        chosen = min([best, *ok], key=lambda c: c.p50(cfg.batch))
        final_batches = tuple(dict.fromkeys((cfg.batch, cfg.throughput_batch)))
        final = s.time_in_rounds([chosen], default, final_batches, cfg.confirm_time_s, "the chosen recipe, confirmed")
        chosen.chosen = True
        final["chosen"] = chosen.name
        progress.log(f"tune: writing {chosen.name} ({chosen.recipe.describe()})")
        written, derived_lines = _write(s, chosen, derived)
        for line in derived_lines:
            progress.log(f"  {line}")
        images = s.calibration(cfg.layer_images)
        layers = layer_errors(written, s.src, images)
        result = TuneResult(
            settings={"max_drop_points": cfg.max_drop, "batch": cfg.batch, "threads": s.threads,
                      "budget_minutes": cfg.budget_minutes, "formats": list(cfg.formats), "rounds": cfg.rounds,
                      "layer_images": len(images)},
            reference_accuracy=s.ref.accuracy, candidates=s.made, skipped=skipped, chosen=chosen, final=final,
            layers=layers, excluded=excluded, derived=derived_lines, written=written,
            seconds=time.perf_counter() - t0)
    if cfg.write:
        from mnist_edge.verify.tune.report import write_reports

        result.files = write_reports(result, art, cfg.plot)
    return result
