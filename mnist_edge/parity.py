"""`mnist-edge check`: does each exported model compute what the PyTorch checkpoint computes?

Modelled on optimum's ONNX validation: shapes first, then closeness per output, every failure
collected, the largest difference reported. Tolerances are named constants a run can override.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .data import Split
from .formats import EXPORTED, Format
from .runtimes import Runtime, load_runtime, run_batched
from .tolerances import Tolerances

CHECK_BATCH_SIZES = (1, 7, 256)  # 7: an odd size; all three prove the batch axis is really dynamic


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
    logits = run_batched(rt, x, 256)
    _, edge = edge_inputs(rt.metadata.mean, rt.metadata.std)
    return Reference(rt, x, split.labels, logits, float((logits.argmax(1) == split.labels).mean()),
                     edge, rt.run(edge))


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

    def to_json(self) -> dict:
        return asdict(self)


def compare(ref: Reference, rt: Runtime, int8: bool, tol: Tolerances | None = None,
            batch_sizes: tuple[int, ...] = CHECK_BATCH_SIZES, name: str | None = None) -> FormatResult:
    """Run `rt` over the reference inputs at each batch size and hold it to the tolerances."""
    tol = tol or Tolerances()
    failures: list[str] = []
    n, k = ref.logits.shape
    max_d, sum_d, count, agree = 0.0, 0.0, 0, 1.0
    acc = float("nan")
    for bs in batch_sizes:
        try:
            out = run_batched(rt, ref.inputs, bs)
        except Exception as e:  # a runtime that cannot take this batch size is a failure to report
            failures.append(f"batch {bs}: the model did not run ({str(e).splitlines()[0][:120]})")
            continue
        if out.shape != (n, k):
            failures.append(f"batch {bs}: output shape {out.shape}, expected {(n, k)}")
            continue
        if not np.isfinite(out).all():
            failures.append(f"batch {bs}: non-finite outputs")
            continue
        d = np.abs(out.astype(np.float64) - ref.logits)
        max_d, sum_d, count = max(max_d, float(d.max())), sum_d + float(d.sum()), count + d.size
        agree = min(agree, float((out.argmax(1) == ref.logits.argmax(1)).mean()))
        acc = float((out.argmax(1) == ref.labels).mean())
    mean_d = sum_d / count if count else float("nan")
    delta = acc - ref.accuracy

    edge_out = rt.run(ref.edge)
    edge_d = float(np.abs(edge_out.astype(np.float64) - ref.edge_logits).max())
    names, _ = edge_inputs(ref.runtime.metadata.mean, ref.runtime.metadata.std)
    if not np.isfinite(edge_out).all():
        failures.append("edge inputs: non-finite outputs")
    elif not int8:
        # logits of the extreme input are large: hold them to the tolerance relative to their size
        scale = np.maximum(1.0, np.abs(ref.edge_logits).max(1))
        bad = [nm for nm, dd, s in zip(names, np.abs(edge_out - ref.edge_logits).max(1), scale)
               if dd > tol.fp32_max_abs_diff * s]
        bad += [nm for nm, a, b in zip(names, edge_out.argmax(1), ref.edge_logits.argmax(1)) if a != b
                and nm not in bad]
        if bad:
            failures.append(f"edge inputs differ: {', '.join(bad)}")

    eps = 1e-9  # 2 flips in 1,000 is a drop of exactly 0.2 points: at the bound is within it
    if count:
        if int8:
            if agree < tol.int8_min_agreement - eps:
                failures.append(f"top-1 agreement {100 * agree:.2f}% < {100 * tol.int8_min_agreement:.2f}%")
            if -delta > tol.int8_max_accuracy_drop + eps:
                failures.append(f"accuracy drop {100 * -delta:.2f} points > "
                                f"{100 * tol.int8_max_accuracy_drop:.2f}")
        else:
            if max_d > tol.fp32_max_abs_diff:
                failures.append(f"max |Δlogit| {max_d:.2e} > {tol.fp32_max_abs_diff:.0e}")
            if agree < tol.fp32_min_agreement - eps:
                failures.append(f"top-1 agreement {100 * agree:.2f}% < {100 * tol.fp32_min_agreement:.2f}%")
    return FormatResult(
        format=name or rt.format, path=str(rt.path), max_abs_diff=max_d, mean_abs_diff=mean_d,
        top1_agreement=agree if count else 0.0, accuracy=acc, accuracy_delta=delta,
        passed=not failures, edge_max_abs_diff=edge_d, batch_sizes=list(batch_sizes), failures=failures,
    )


def present_formats(artifacts: Path) -> list[tuple[Format, Path]]:
    """The exported models found in a folder, in table order."""
    return [(f, artifacts / f.filename) for f in EXPORTED if (artifacts / f.filename).is_file()]


@dataclass
class CheckReport:
    passed: bool
    reference_accuracy: float
    results: list[FormatResult]

    def to_json(self) -> dict:
        return {"passed": self.passed, "reference_accuracy": self.reference_accuracy,
                "results": [r.to_json() for r in self.results]}


def check_folder(ref: Reference, artifacts: Path, tol: Tolerances | None = None) -> CheckReport:
    results = []
    for fmt, path in present_formats(artifacts):
        rt = load_runtime(path)
        results.append(compare(ref, rt, fmt.int8, tol, name=fmt.name))
    return CheckReport(all(r.passed for r in results) and bool(results), ref.accuracy, results)


def table(results: list[FormatResult], ref_accuracy: float) -> str:
    """The human report: one row per format."""
    head = (f"{'format':<18}{'max |Δ|':>10}{'mean |Δ|':>10}{'top-1 agree':>13}{'accuracy':>10}"
            f"{'Δ acc':>8}  result")
    rows = [f"{'pytorch (ref)':<18}{'':>10}{'':>10}{'':>13}{100 * ref_accuracy:>9.2f}%{'':>8}  reference"]
    for r in results:
        verdict = "pass" if r.passed else "FAIL: " + "; ".join(r.failures)
        rows.append(f"{r.format:<18}{r.max_abs_diff:>10.1e}{r.mean_abs_diff:>10.1e}"
                    f"{100 * r.top1_agreement:>12.2f}%{100 * r.accuracy:>9.2f}%"
                    f"{100 * r.accuracy_delta:>+8.2f}  {verdict}")
    return "\n".join([head, *rows])
