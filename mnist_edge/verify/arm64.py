"""`check --cpu CORE`: the ARM64 formats of an artifacts folder run on an emulated ARM core, as extra rows.

Each ARM64 format present (those whose runtime has an aarch64 wheel in the emulated userland: ONNX
and LiteRT) runs once on the core, on the test images and the 4 edge inputs (split between one
emulated process per host core), and is held to the same bars against PyTorch as the host's row.
The int8 rows are also held bit for bit to what every CPU must compute: int8 ONNX to the exact
integer reference of its QDQ graph, int8 LiteRT to the host's LiteRT (XNNPACK requantizes the same
way on x86 and ARM). Emulation proves the arithmetic of the ARM kernels, not their speed: its
timings are the emulator's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnist_edge.core.errors import MnistEdgeError, first_line
from mnist_edge.core.formats import Format, exported_present
from mnist_edge.core.scores import accuracy, run_batched
from mnist_edge.core.tolerances import Tolerances
from mnist_edge.edge.arm64 import emulator, userland
from mnist_edge.verify.parity import FormatResult, Reference, _bar_failures, _edge_failures


def int8_reference(fmt: Format, path: Path, x: np.ndarray) -> tuple[str, np.ndarray] | None:
    """(what, logits) an emulated int8 row must equal bit for bit, or None for fp32 rows.

    int8 ONNX: the integer reference of its QDQ graph (ONNX Runtime's ARM kernels sum in int32, so
    they are exact whatever the weights). int8 LiteRT: the host's LiteRT on the same file.
    """
    if fmt.exact_int8:
        from mnist_edge.quant.reference import reference_logits

        return f"integer reference of {path.name}", reference_logits(path, x)
    if fmt.int8:
        from mnist_edge.core.formats import load_runtime

        return f"host {fmt.name}", run_batched(load_runtime(path, 1), x, max(fmt.check_batch_sizes))
    return None


@dataclass
class EmulatedResult(FormatResult):
    """A FormatResult of a format run on an emulated core, with the emulator's timings."""

    cpu: str = ""
    images: int = 0
    wall_s: float = 0.0  # the emulated process: start, imports, model load, every image
    per_image_s: float = 0.0  # host CPU seconds of emulation per image: emulator time, not device time
    features: list[str] = field(default_factory=list)  # the hwcaps the emulated core showed the runtime


def arm64_formats(artifacts: Path) -> list[tuple[Format, Path, str | None]]:
    """(format, path, why it is skipped or None) of every exported format present whose runtime is ARM64's."""
    return [(f, p, emulator.emulable(f.loader)) for f, p in exported_present(artifacts)
            if f.loader in emulator.RUNTIME_MODULES]


def check_on_core(ref: Reference, fmt: Format, path: Path, cpu: str, tol: Tolerances | None = None,
                  limit: int | None = None, timeout_s: float | None = None) -> EmulatedResult:
    """Run one model on the emulated core on the first `limit` test images (all if None) and judge it."""
    tol = tol or Tolerances()
    n = len(ref.inputs) if limit is None else min(limit, len(ref.inputs))
    x, labels, want = ref.inputs[:n], ref.labels[:n], ref.logits[:n]
    batch = max(fmt.check_batch_sizes)
    name = f"{fmt.name} @ {cpu}"
    failures: list[str] = []
    try:
        run = emulator.run(path, np.concatenate([x, ref.edge]), cpu, batch=batch, timeout_s=timeout_s)
    except MnistEdgeError as e:
        return EmulatedResult(format=name, path=str(path), max_abs_diff=float("nan"), mean_abs_diff=float("nan"),
                              top1_agreement=0.0, accuracy=float("nan"), accuracy_delta=float("nan"),
                              passed=False, batch_sizes=[batch], failures=[first_line(e, 200)], cpu=cpu, images=n)
    out, edge_out = run.logits[:n], run.logits[n:]
    if out.shape != want.shape or not np.isfinite(out).all():
        failures.append(f"output shape {out.shape} or non-finite values, expected {want.shape}")
        d = np.full(1, np.nan)
    else:
        d = np.abs(out.astype(np.float64) - want)
    agree = float((out.argmax(1) == want.argmax(1)).mean())
    acc, ref_acc = accuracy(out, labels), accuracy(want, labels)
    failures += _bar_failures(float(d.max()), agree, acc - ref_acc, fmt.int8, tol)
    failures += _edge_failures(ref, edge_out, fmt.int8, tol)
    against = None
    exact = int8_reference(fmt, path, x)
    if exact is not None:
        what, theirs = exact
        dd = float(np.abs(out.astype(np.float64) - theirs).max())
        same = float((out.argmax(1) == theirs.argmax(1)).mean())
        against = {"format": what, "max_abs_diff": dd, "top1_agreement": same}
        if dd != 0.0:
            failures.append(f"not bit-identical to the {what}: max |Δlogit| {dd:.2e}")
    return EmulatedResult(
        format=name, path=str(path), max_abs_diff=float(d.max()), mean_abs_diff=float(d.mean()), top1_agreement=agree,
        accuracy=acc, accuracy_delta=acc - ref_acc, passed=not failures,
        edge_max_abs_diff=float(np.abs(edge_out.astype(np.float64) - ref.edge_logits).max()),
        batch_sizes=[batch], failures=failures, against=against, cpu=cpu, images=n, wall_s=run.wall_s,
        per_image_s=run.per_image_s, features=list(run.features))


def check_cores(ref: Reference, artifacts: Path, cpus: list[str], tol: Tolerances | None = None,
                limit: int | None = None, log=None) -> tuple[list[EmulatedResult], list[str]]:
    """(rows, one line per format or core skipped and why): every ARM64 format present on every core."""
    found = arm64_formats(artifacts)
    if not found:
        return [], [f"{artifacts}: no ARM64 formats (ONNX, LiteRT) to run on emulated cores"]
    why = userland.problem()
    if why:
        return [], [f"ARM64 rows skipped: {why}"]
    rows: list[EmulatedResult] = []
    skipped: list[str] = []
    n = len(ref.inputs) if limit is None else min(limit, len(ref.inputs))
    for cpu in cpus:
        for fmt, path, why in found:
            if why:
                skipped.append(f"{fmt.name} @ {cpu} skipped: {why}")
                continue
            if log:
                log(f"running {fmt.name} on an emulated {cpu}, {n:,} test images")
            rows.append(check_on_core(ref, fmt, path, cpu, tol, limit))
    return rows, skipped


def table(rows: list[EmulatedResult], skipped: list[str]) -> str:
    """The human report of the emulated rows, their emulator timings (labelled so) and what was skipped."""
    if not rows:
        return "\n".join(skipped)
    n = rows[0].images
    lines = [f"on emulated ARM cores (QEMU user mode), {n:,} test images:",
             f"{'format @ core':<28}{'max |Δ|':>10}{'mean |Δ|':>10}{'top-1 agree':>13}{'accuracy':>10}{'Δ acc':>8}  "
             "result"]
    for r in rows:
        verdict = "pass" if r.passed else "FAIL: " + "; ".join(r.failures)
        if r.against:
            verdict += f" (against {r.against['format']}: max |Δ| {r.against['max_abs_diff']:.1e})"
        lines.append(f"{r.format:<28}{r.max_abs_diff:>10.1e}{r.mean_abs_diff:>10.1e}{100 * r.top1_agreement:>12.2f}%"
                     f"{100 * r.accuracy:>9.2f}%{100 * r.accuracy_delta:>+8.2f}  {verdict}")
    lines.append("time under emulation (QEMU's speed on this host, not a device's):")
    lines += [f"  {r.format:<28}{1e3 * r.per_image_s:>8.1f} ms of host CPU per image, {r.wall_s:.0f} s in all"
              f" (features: {', '.join(r.features) or 'none'})" for r in rows if r.images]
    return "\n".join([*lines, *skipped])
