"""`mnist-edge check`: does each exported model compute what the PyTorch checkpoint computes?

Modelled on optimum's ONNX validation: shapes first, then closeness per output, every failure
collected, the largest difference reported. Tolerances are named constants a run can override.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mnist_edge.core.cache import accuracy_key, remember
from mnist_edge.core.data import Split
from mnist_edge.core.errors import first_line
from mnist_edge.core.formats import INT8_ONNX, Format, Runtime, exported_present, load_runtime
from mnist_edge.core.scores import accuracy, run_batched
from mnist_edge.core.tolerances import Tolerances

EPS = 1e-9  # 2 flips in 1,000 is a drop of exactly 0.2 points: at the bound is within it


def edge_inputs(mean: float, std: float) -> tuple[list[str], np.ndarray]:
    """Inputs at the edges of what a model sees, already normalised: (names, (4, 1, 28, 28))."""
    rng = np.random.default_rng(0)
    pixels = np.stack([
        np.zeros((28, 28)),  # an empty image
        np.full((28, 28), 255.0),  # all white
        rng.uniform(0, 255, (28, 28)),  # uniform noise
    ]).astype(np.float32)
    x = ((pixels / 255.0 - mean) / std).astype(np.float32)[:, None]
    extreme = np.where(np.indices((28, 28)).sum(0) % 2 == 0, 100.0, -100.0)  # far outside training range
    x = np.concatenate([x, extreme.astype(np.float32)[None, None]])
    return ["all-zero", "all-white", "noise", "extreme"], x


@dataclass
class Reference:
    """What the PyTorch model computes on the test set and the edge inputs."""

    runtime: Runtime
    inputs: np.ndarray  # normalised test images (N, 1, 28, 28)
    labels: np.ndarray
    logits: np.ndarray
    accuracy: float
    edge: np.ndarray  # (4, 1, 28, 28)
    edge_logits: np.ndarray


def reference(rt: Runtime, split: Split) -> Reference:
    x = rt.metadata.normalize(split.images)
    logits = run_batched(rt, x)  # EVAL_BATCH, as training scores each epoch
    _, edge = edge_inputs(rt.metadata.mean, rt.metadata.std)
    return Reference(rt, x, split.labels, logits, accuracy(logits, split.labels), edge, rt.run(edge))


@dataclass
class FormatResult:
    format: str
    path: str
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    accuracy: float
    accuracy_delta: float  # this format's accuracy minus the reference's, as a fraction
    passed: bool
    edge_max_abs_diff: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    against: dict | None = None  # max |Δ| and agreement against the format's reference sibling, if it has one
    exact: dict | None = None  # against the int8 file's integer reference (quant/reference.py), if held to it
    engine: str | None = None  # what ran the file, where a format names it (the web app: wasm in Node, or not)
    skipped: str | None = None  # why a device row did not run here (its toolchain is missing)

    def to_json(self) -> dict:
        return asdict(self)


def _run_all(rt: Runtime, ref: Reference, batch_sizes: tuple[int, ...], failures: list[str]) -> list[np.ndarray]:
    """The runtime's logits on the reference inputs at each batch size; what fails is reported, not raised."""
    n, k = ref.logits.shape
    outs = []
    for bs in batch_sizes:
        try:
            out = run_batched(rt, ref.inputs, bs)
        except Exception as e:  # a runtime that cannot take this batch size is a failure to report
            failures.append(f"batch {bs}: the model did not run ({first_line(e, 120)})")
            continue
        if out.shape != (n, k):
            failures.append(f"batch {bs}: output shape {out.shape}, expected {(n, k)}")
        elif not np.isfinite(out).all():
            failures.append(f"batch {bs}: non-finite outputs")
        else:
            outs.append(out)
    return outs


def _edge_failures(ref: Reference, edge_out: np.ndarray, int8: bool, tol: Tolerances) -> list[str]:
    if not np.isfinite(edge_out).all():
        return ["edge inputs: non-finite outputs"]
    if int8:
        return []
    names, _ = edge_inputs(ref.runtime.metadata.mean, ref.runtime.metadata.std)
    # logits of the extreme input are large: hold them to the tolerance relative to their size
    scale = np.maximum(1.0, np.abs(ref.edge_logits).max(1))
    bad = [nm for nm, dd, s in zip(names, np.abs(edge_out - ref.edge_logits).max(1), scale, strict=True)
           if dd > tol.fp32_max_abs_diff * s]
    bad += [nm for nm, a, b in zip(names, edge_out.argmax(1), ref.edge_logits.argmax(1), strict=True)
            if a != b and nm not in bad]
    return [f"edge inputs differ: {', '.join(bad)}"] if bad else []


def _bar_failures(max_d: float, agree: float, delta: float, int8: bool, tol: Tolerances) -> list[str]:
    if int8:
        out = []
        if agree < tol.int8_min_agreement - EPS:
            out.append(f"top-1 agreement {100 * agree:.2f}% < {100 * tol.int8_min_agreement:.2f}%")
        if -delta > tol.int8_max_accuracy_drop + EPS:
            out.append(f"accuracy drop {100 * -delta:.2f} points > {100 * tol.int8_max_accuracy_drop:.2f}")
        return out
    out = []
    if max_d > tol.fp32_max_abs_diff:
        out.append(f"max |Δlogit| {max_d:.2e} > {tol.fp32_max_abs_diff:.0e}")
    if agree < tol.fp32_min_agreement - EPS:
        out.append(f"top-1 agreement {100 * agree:.2f}% < {100 * tol.fp32_min_agreement:.2f}%")
    return out


def _sibling_failures(fmt: Format, out: np.ndarray, sibling: Runtime, ref: Reference,
                      tol: Tolerances) -> tuple[list[str], dict]:
    """An exact re-implementation of a sibling format (C of int8 ONNX, TFLM of LiteRT) is held to its logits."""
    theirs = run_batched(sibling, ref.inputs)
    d = float(np.abs(out.astype(np.float64) - theirs).max())
    agree = float((out.argmax(1) == theirs.argmax(1)).mean())
    min_agree = fmt.reference_min_agreement if tol.reference_min_agreement is None else tol.reference_min_agreement
    failures = []
    if fmt.reference_max_abs_diff is not None and d > fmt.reference_max_abs_diff:
        failures.append(f"max |Δlogit| against {fmt.reference} {d:.2e} > {fmt.reference_max_abs_diff:.0e}")
    if min_agree is not None and agree < min_agree - EPS:
        failures.append(f"top-1 agreement with {fmt.reference} {100 * agree:.2f}% < {100 * min_agree:.2f}%")
    return failures, {"format": fmt.reference, "max_abs_diff": d, "top1_agreement": agree}


@dataclass
class ExactReference:
    """The exact integer logits of an int8 ONNX file on the reference inputs: what exact runtimes must give."""

    source: Path
    program: object  # quant.graph.Program
    logits: np.ndarray


def exact_reference(source: Path, ref: Reference) -> ExactReference | None:
    """The integer reference's logits of the int8 file `source`; None where it has none (layers left in fp32)."""
    from mnist_edge.core.errors import ModelFileError
    from mnist_edge.quant import reference as integer

    try:
        ir = integer.load(source)
    except ModelFileError:  # a graph outside the integer program: held to the PyTorch int8 bars only
        return None
    return ExactReference(Path(source), ir.program, ir.run(ref.inputs))


def compare(ref: Reference, rt: Runtime, fmt: Format, tol: Tolerances | None = None,
            sibling: Runtime | None = None, exact: ExactReference | None = None) -> FormatResult:
    """Run `rt` over the reference inputs at each batch size its format takes and hold it to the bars.

    A row with `exact_int8` is also held bit for bit to `exact` (the integer reference of its int8 ONNX
    file) at every batch size, unless its runtime cannot be exact on this CPU, which is then reported.
    """
    tol = tol or Tolerances()
    failures: list[str] = []
    outs = _run_all(rt, ref, fmt.check_batch_sizes, failures)
    max_d, mean_d, agree, acc = 0.0, float("nan"), 0.0, float("nan")
    if outs:
        d = np.stack([np.abs(o.astype(np.float64) - ref.logits) for o in outs])
        max_d, mean_d = float(d.max()), float(d.mean())
        agree = min(float((o.argmax(1) == ref.logits.argmax(1)).mean()) for o in outs)
        acc = accuracy(outs[-1], ref.labels)
        failures += _bar_failures(max_d, agree, acc - ref.accuracy, fmt.int8, tol)
    edge_out = run_batched(rt, ref.edge, min(fmt.check_batch_sizes))
    failures += _edge_failures(ref, edge_out, fmt.int8, tol)
    against = None
    if sibling is not None and outs:
        more, against = _sibling_failures(fmt, outs[-1], sibling, ref, tol)
        failures += more
    exact_report = None
    if fmt.exact_int8 and exact is not None and outs:
        from mnist_edge.quant.reference import hold

        worst = max(outs, key=lambda o: float(np.abs(o.astype(np.float64) - exact.logits).max()))
        more, exact_report = hold(worst, exact.logits, rt, exact.program, exact.source)
        failures += more
    return FormatResult(
        format=fmt.name, path=str(rt.path), max_abs_diff=max_d, mean_abs_diff=mean_d, top1_agreement=agree,
        accuracy=acc, accuracy_delta=acc - ref.accuracy, passed=not failures,
        edge_max_abs_diff=float(np.abs(edge_out.astype(np.float64) - ref.edge_logits).max()),
        batch_sizes=list(fmt.check_batch_sizes), failures=failures, against=against, exact=exact_report,
        engine=getattr(rt, "engine", None),
    )


@dataclass
class CheckReport:
    passed: bool
    reference_accuracy: float
    results: list[FormatResult]

    def to_json(self) -> dict:
        from mnist_edge.core.cpu import cpu_info

        return {"passed": self.passed, "reference_accuracy": self.reference_accuracy, "cpu": cpu_info(),
                "results": [r.to_json() for r in self.results]}


def check_folder(ref: Reference, artifacts: Path, tol: Tolerances | None = None, devices: bool = True) -> CheckReport:
    """Every exported model in `artifacts` against the reference; with `devices`, also the emulated device rows."""
    results = []
    present = [(f, p) for f, p in exported_present(artifacts) if devices or not f.device]
    found = {f.name: p for f, p in present}
    int8_onnx = found.get(INT8_ONNX)
    exact = exact_reference(int8_onnx, ref) if int8_onnx and any(f.exact_int8 for f, _ in present) else None
    for fmt, path in present:
        why = fmt.unavailable() if fmt.device else None
        if why:  # an emulated device without its toolchain: the row is skipped, saying why
            results.append(FormatResult(fmt.name, str(path), float("nan"), float("nan"), float("nan"), float("nan"),
                                        float("nan"), True, skipped=why))
            continue
        sibling = load_runtime(found[fmt.reference]) if fmt.reference in found else None
        result = compare(ref, fmt.load(path), fmt, tol, sibling, exact)
        results.append(result)
        if np.isfinite(result.accuracy):  # bench reuses it instead of scoring the same bytes again
            remember(artifacts, "accuracy", accuracy_key(path, fmt.loader, ref.inputs, ref.labels),
                     {"accuracy": result.accuracy, "by": "check"})
    return CheckReport(all(r.passed for r in results) and bool(results), ref.accuracy, results)


def table(results: list[FormatResult], ref_accuracy: float) -> str:
    """The human report: one row per format."""
    head = (f"{'format':<18}{'max |Δ|':>10}{'mean |Δ|':>10}{'top-1 agree':>13}{'accuracy':>10}"
            f"{'Δ acc':>8}  result")
    rows = [f"{'pytorch (ref)':<18}{'':>10}{'':>10}{'':>13}{100 * ref_accuracy:>9.2f}%{'':>8}  reference"]
    for r in results:
        if r.skipped:
            rows.append(f"{r.format:<18}{'':>63}  skipped: {r.skipped}")
            continue
        verdict = "pass" if r.passed else "FAIL: " + "; ".join(r.failures)
        if r.against:
            a = r.against
            verdict += f" (against {a['format']}: max |Δ| {a['max_abs_diff']:.1e}, {100 * a['top1_agreement']:.2f}%)"
        if r.engine:
            verdict += f" [{r.engine}]"
        if r.exact:
            e = r.exact
            verdict += ("; bit-exact with the integer reference" if e["bit_exact"] else
                        f"; not exact on this CPU (max |Δ| {e['max_abs_diff']:.2f} against the integer reference, "
                        f"{100 * e['top1_agreement']:.2f}% top-1): {e['why']}" if e["why"] else "")
        rows.append(f"{r.format:<18}{r.max_abs_diff:>10.1e}{r.mean_abs_diff:>10.1e}"
                    f"{100 * r.top1_agreement:>12.2f}%{100 * r.accuracy:>9.2f}%"
                    f"{100 * r.accuracy_delta:>+8.2f}  {verdict}")
    return "\n".join([head, *rows])
