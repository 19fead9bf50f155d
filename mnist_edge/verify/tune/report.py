"""The tune report: tune.json (every candidate), tune.md, tune.png (accuracy vs latency) and tune_layers.png."""

from __future__ import annotations

from pathlib import Path

from mnist_edge.core.cpu import describe
from mnist_edge.core.fileio import write_json, write_text, write_with
from mnist_edge.verify.tune import layers as layer_report

REPORT_FILES = ("tune.json", "tune.md", "tune.png", "tune_layers.png")


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the (latency, accuracy) points no other point beats on both (lower latency, higher accuracy)."""
    front = []
    for i, (lat, acc) in enumerate(points):
        if not any((l2 <= lat and a2 >= acc) and (l2 < lat or a2 > acc) for l2, a2 in points):
            front.append(i)
    return front


def _ratio(p: dict, key: str) -> str:
    return f"{p[key]:.2f}x ({p[key + '_ci'][0]:.2f}-{p[key + '_ci'][1]:.2f})"


def summary(result) -> list[str]:
    """The lines that say what was chosen and how it compares, from the final run."""
    from mnist_edge.verify.tune.search import DEFAULT, FP32_REF  # the final run's reference points

    c, f = result.chosen, result.final
    b, big = (str(x) for x in (f["batches"][0], f["batches"][-1]))
    pc, pd, pf = (f["points"][b][n] for n in (c.name, DEFAULT, FP32_REF))
    lines = [f"chosen: {c.name}: {c.recipe.describe()}; exact on {c.right_on}",
             f"accuracy {100 * c.parity.accuracy:.2f}% ({100 * c.parity.accuracy_delta:+.2f} points against "
             f"PyTorch {100 * result.reference_accuracy:.2f}%), top-1 agreement {100 * c.parity.top1_agreement:.2f}%",
             f"batch {b} p50 {pc['p50_ms']:.4f} ms ({pc['p50_ci_ms'][0]:.4f}-{pc['p50_ci_ms'][1]:.4f}): "
             f"{_ratio(pc, 'vs_default')} the default recipe ({pd['p50_ms']:.4f} ms), {_ratio(pc, 'vs_fp32')} "
             f"fp32 ({pf['p50_ms']:.4f} ms), same run"]
    if big != b:
        qc, qd, qf = (f["points"][big][n] for n in (c.name, DEFAULT, FP32_REF))
        lines.append(f"batch {big}: {qc['throughput_ips']:,.0f} images/s, {_ratio(qc, 'vs_fp32')} fp32 "
                     f"({qf['throughput_ips']:,.0f}); default recipe {qd['throughput_ips']:,.0f}, "
                     f"{_ratio(qd, 'vs_fp32')} fp32, same run")
    if result.excluded:
        lines.append(f"layers put back to fp32 by the fallback: {', '.join(result.excluded)}")
    return lines


def markdown(result) -> str:
    s = result.settings
    lines = [f"# mnist-edge tune: max drop {s['max_drop_points']:g} points, batch {s['batch']}, "
             f"{s['threads']} thread(s), {result.seconds:.0f} s", "", f"CPU: {describe()}", "",
             *[f"- {ln}" for ln in summary(result)], *[f"- {ln}" for ln in result.derived], "",
             f"| candidate | stage | meets budget | accuracy (%) | Δ (pts) | agreement (%) | size (KB) | "
             f"p50 ms @{s['batch']} (95% CI) | vs default | exact on | note |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for c in result.candidates:
        t = c.timing.get(s["batch"])
        p50 = f"{t.latency_ms_p50:.4f} ({t.p50_ci_ms[0]:.4f}-{t.p50_ci_ms[1]:.4f})" if t else "–"
        vs = f"{c.vs_default[0]:.2f}x ({c.vs_default[1]:.2f}-{c.vs_default[2]:.2f})" if t and c.vs_default else "–"
        p = c.parity
        name = f"**{c.name}**" if c.chosen else c.name
        lines.append(f"| {name} | {c.stage} | {'yes' if c.passed else 'no'} | {100 * p.accuracy:.2f} | "
                     f"{100 * p.accuracy_delta:+.2f} | {100 * p.top1_agreement:.2f} | {c.size_bytes / 1024:.0f} | "
                     f"{p50} | {vs} | {c.right_on} | {c.note or '; '.join(p.failures)} |")
    if result.skipped:
        lines += ["", f"not tried (over budget): {', '.join(result.skipped)}"]
    lines += ["", f"Per-layer error of {result.written.name} on {s['layer_images']} calibration images, "
              "most harmful first:", "", "```", layer_report.table(result.layers), "```"]
    return "\n".join(lines) + "\n"


def plot(result, dest: Path) -> None:
    """tune.png: accuracy vs batch-N p50 of every timed candidate, the Pareto front joined, the chosen one ringed."""
    from mnist_edge.core.deps import require

    mpl = require("matplotlib")
    mpl.use("Agg")
    plt = require("matplotlib.pyplot")
    b = result.settings["batch"]
    timed = [c for c in result.candidates if b in c.timing]
    pts = [(c.p50(b), 100 * c.parity.accuracy) for c in timed]
    fig, ax = plt.subplots(figsize=(8, 5))
    for c, (x, y) in zip(timed, pts, strict=True):
        xerr = [[x - c.timing[b].p50_ci_ms[0]], [c.timing[b].p50_ci_ms[1] - x]]
        ax.errorbar(x, y, xerr=xerr, fmt="o", color="C0" if c.passed else "C7", alpha=0.8, capsize=2)
        ax.annotate(c.name, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    front = sorted((pts[i] for i in pareto(pts)), key=lambda p: p[0])
    if front:
        ax.plot(*zip(*front, strict=True), "--", color="C1", label="Pareto front")
    ch = next((c for c in timed if c.chosen), None)
    if ch is not None:
        ax.scatter([ch.p50(b)], [100 * ch.parity.accuracy], s=250, facecolors="none", edgecolors="C3",
                   linewidths=2, label=f"chosen: {ch.name}")
    ax.axhline(100 * (result.reference_accuracy - result.settings["max_drop_points"] / 100), color="C3", lw=0.8,
               ls=":", label="accuracy budget")
    ax.set(xlabel=f"p50 latency at batch {b} (ms, 95% interval)", ylabel="test accuracy (%)",
           title="mnist-edge tune: int8 candidates (grey: outside the budget)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_with(dest, lambda tmp: fig.savefig(tmp, format="png", dpi=110), suffix=".png")
    plt.close(fig)


def write_reports(result, folder: Path, with_plot: bool = True) -> list[Path]:
    paths = [folder / name for name in REPORT_FILES]
    write_json(paths[0], result.to_json())
    write_text(paths[1], markdown(result))
    if not with_plot:
        return paths[:2]
    plot(result, paths[2])
    layer_report.plot(result.layers, paths[3], f"per-layer int8 error of {result.written.name}")
    return paths
