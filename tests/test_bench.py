"""`mnist-edge bench`: statistics, the report files, the accuracy gate and one-line errors, on a tiny model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_edge.core.formats import FORMATS, Format
from mnist_edge.core.settings import BenchSettings
from mnist_edge.verify.bench import run as bench
from mnist_edge.verify.bench import stats
from mnist_edge.verify.bench.report import read_baseline, regressions
from mnist_edge.verify.bench.run import BenchError, run_bench

from .conftest import random_onnx_run

ROW_KEYS = {"format", "batch_size", "latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "throughput_ips",
            "accuracy", "size_bytes", "load_ms", "peak_rss_mb"}
MACHINE_KEYS = {"cpu", "cores", "threads", "python", "torch", "onnxruntime", "date"}
FAST = {"min_time_s": 0.04, "min_iters": 8, "warmup_s": 0.0, "warmup_iters": 2, "threads": 1, "rounds": 4}


# --- statistics ---------------------------------------------------------------------------------

def test_percentiles_of_known_arrays():
    p = stats.percentiles(np.arange(1, 101))  # 1..100
    assert p == pytest.approx({50: 50.5, 90: 90.1, 99: 99.01})
    assert stats.percentiles([7.0]) == {50: 7.0, 90: 7.0, 99: 7.0}
    assert stats.percentiles([1.0, 3.0], qs=(0, 50, 100)) == {0: 1.0, 50: 2.0, 100: 3.0}
    with pytest.raises(ValueError):
        stats.percentiles([])


def test_throughput_and_speedup_arithmetic():
    assert stats.throughput(32, [0.01] * 10) == pytest.approx(3200.0)  # 320 images in 0.1 s
    assert stats.throughput(1, [0.001, 0.003]) == pytest.approx(500.0)  # 2 images in 4 ms
    with pytest.raises(ValueError):
        stats.throughput(1, [])


def test_intervals_come_from_windows_and_pair_rounds():
    rng = np.random.default_rng(0)
    steady = [1.0 + 0.01 * rng.standard_normal(50) for _ in range(8)]
    lo, hi = stats.p50_interval(steady)
    assert lo <= np.median(np.concatenate(steady)) <= hi and hi - lo < 0.02 and not stats.noisy(1.0, lo, hi)
    drifting = [w * f for w, f in zip(steady, (1, 1.5, 1, 1.5, 1, 1.5, 1, 1.5), strict=True)]
    assert stats.noisy(float(np.median(np.concatenate(drifting))), *stats.p50_interval(drifting))
    # b is 2x a in every round, while the rounds themselves drift: the paired ratio stays tight
    b = [2 * w for w in drifting]
    ratio, rlo, rhi = stats.ratio_interval(drifting, b)
    assert ratio == pytest.approx(2.0) and rlo == pytest.approx(2.0, rel=1e-6) and rhi == pytest.approx(2.0, rel=1e-6)
    assert stats.slower_than((2.0, 1.9, 2.1), (1.0, 0.9, 1.1))
    assert not stats.slower_than((1.05, 0.95, 1.15), (1.0, 0.9, 1.1))  # within both intervals


def test_time_calls_warms_up_then_meets_the_minimum_count_and_the_time_cap():
    calls = []
    t = stats.time_calls(calls.append, 1, min_time_s=0.0, min_iters=7, warmup_iters=3)
    assert len(t) == 7 and len(calls) == 10 and (t >= 0).all()

    import time

    slow = stats.time_calls(lambda _: time.sleep(0.01), None, min_time_s=0.0, min_iters=1000, max_time_s=0.05)
    assert 2 <= len(slow) <= 8  # capped by max_time_s, not 1000 calls
    assert np.median(slow) == pytest.approx(0.01, abs=0.008)


def test_batch_of_repeats_a_small_set():
    x = np.arange(3, dtype=np.float32).reshape(3, 1, 1, 1)
    assert stats.batch_of(x, 2).ravel().tolist() == [0, 1]
    assert stats.batch_of(x, 7).ravel().tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_option_parsing():
    assert bench.parse_batch_sizes("256, 1,32,1") == (1, 32, 256)
    assert bench.parse_batch_sizes(None) == (1, 32, 256)
    assert bench.parse_formats(" onnx,ONNX-int8,onnx ") == ("onnx", "onnx-int8")
    assert bench.parse_formats("") is None
    for bad, why in (("1,x", "'x' is not a whole number"), ("0", "0 is not a batch size"),
                     ("1,-4", "-4 is not a batch size"), (",", "no batch size")):
        with pytest.raises(BenchError, match=why):
            bench.parse_batch_sizes(bad)


def test_importing_bench_loads_neither_torch_nor_matplotlib():
    code = ("import sys, mnist_edge.verify.bench.run; "
            "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- a tiny model, benchmarked for real ---------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_art(tmp_path_factory) -> tuple[Path, Path]:
    """(artifacts with a random edgenet model.pth + model.onnx, synthetic data folder)."""
    return random_onnx_run(tmp_path_factory.mktemp("bench"))


@pytest.fixture(scope="session")
def report(tiny_art):
    art, data = tiny_art
    return run_bench(BenchSettings(artifacts=art, data_dir=str(data), batch_sizes=(1, 4), **FAST))


def _accuracy(path: Path, data: Path) -> float:
    from mnist_edge.core.data import load_test_split
    from mnist_edge.core.formats import load_runtime
    from mnist_edge.core.scores import score

    return score(load_runtime(path), load_test_split(str(data))).accuracy


def test_json_has_one_row_per_format_and_batch_size_with_the_numbers(tiny_art, report):
    art, data = tiny_art
    doc = json.loads((art / "bench.json").read_text())
    assert MACHINE_KEYS <= doc["machine"].keys() and doc["machine"]["threads"] == 1
    assert [(r["format"], r["batch_size"]) for r in doc["results"]] == [
        ("pytorch", 1), ("pytorch", 4), ("onnx", 1), ("onnx", 4)]
    acc = {"pytorch": _accuracy(art / "model.pth", data), "onnx": _accuracy(art / "model.onnx", data)}
    for r in doc["results"]:
        assert ROW_KEYS <= r.keys()
        assert r["latency_ms_p50"] <= r["latency_ms_p90"] <= r["latency_ms_p99"]
        assert r["iterations"] >= FAST["min_iters"] and r["windows"] == FAST["rounds"]
        lo, hi = r["p50_ci_ms"]
        assert lo <= r["latency_ms_p50"] <= hi and r["noisy"] == stats.noisy(r["latency_ms_p50"], lo, hi)
        # images/s is the batch over the mean latency
        assert r["throughput_ips"] == pytest.approx(r["batch_size"] * 1e3 / r["latency_ms_mean"], rel=1e-9)
        assert r["accuracy"] == acc[r["format"]]  # the whole (synthetic) test set, as evaluate scores it
        assert r["size_bytes"] == (art / FORMATS[r["format"]].filename).stat().st_size
        assert r["load_ms"] > 0 and r["peak_rss_mb"] > 10
        assert r["torch_imported"] is (r["format"] == "pytorch")  # an ONNX worker never imports torch
    pt1, ox1 = report.row("pytorch", 1), report.row("onnx", 1)
    assert ox1.speedup == pytest.approx(1.0) and pt1.accuracy_delta == 0.0  # speed-ups are against onnx
    assert pt1.speedup == pytest.approx(ox1.latency_ms_p50 / pt1.latency_ms_p50)
    assert pt1.speedup_ci[0] <= pt1.speedup <= pt1.speedup_ci[1]
    assert ox1.accuracy_delta == pytest.approx(acc["onnx"] - acc["pytorch"])
    assert doc["verdict"]["batch_size"] == 1 and {doc["verdict"]["fastest"], doc["verdict"]["runner_up"]} == {
        "pytorch", "onnx"}
    assert doc == json.loads(json.dumps(report.to_json()))  # the file is what --json prints


def test_markdown_table_and_plot_are_written(tiny_art, report):
    art, _ = tiny_art
    md = (art / "bench.md").read_text()
    assert "| Format | Size (MB) | Accuracy (%) |" in md and "p50 ms @1" in md and "images/s @4" in md
    onnx_line = next(ln for ln in md.splitlines() if ln.startswith("| onnx |"))
    r1, r4 = report.row("onnx", 1), report.row("onnx", 4)
    assert f"{r1.latency_ms_p50:.3f} ({r1.p50_ci_ms[0]:.3f}-{r1.p50_ci_ms[1]:.3f}) | {r1.latency_ms_p99:.3f} | " \
           f"{r4.throughput_ips:,.0f} |" in onnx_line
    assert f"{r1.speedup:.2f}x" in onnx_line
    assert md.rstrip().splitlines()[-1] == report.summary()
    assert sum(ln.startswith("| pytorch |") for ln in md.splitlines()) == 1 + 2  # summary + 2 batch sizes
    png = (art / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert not list(art.glob("*.tmp"))  # written atomically


def test_a_format_added_to_the_table_is_benchmarked_without_changes(tiny_art, tmp_path, monkeypatch):
    art, data = tiny_art
    (tmp_path / "model.copy.onnx").write_bytes((art / "model.onnx").read_bytes())
    monkeypatch.setitem(FORMATS, "onnx-copy", Format("onnx-copy", "model.copy.onnx", "onnx",
                                                      "mnist_edge.edge.runtimes.onnx:load", batch_sizes=(2,)))
    rep = run_bench(BenchSettings(artifacts=tmp_path, data_dir=str(data), batch_sizes=(1, 2), write=False, **FAST))
    assert [(r.format, r.batch_size) for r in rep.results] == [("onnx-copy", 2)]  # the only batch it takes
    assert rep.results[0].accuracy == _accuracy(art / "model.onnx", data)
    assert rep.results[0].speedup is None and rep.verdict is None  # no onnx reference, no second format


def test_baseline_gate(tiny_art, report, tmp_path):
    art, _ = tiny_art
    old = read_baseline(art / "bench.json")
    assert regressions(report, old) == []  # the same run against itself
    for r in old["results"]:
        if r["format"] == "onnx":  # as if it had been twice as fast before
            r["latency_ms_p50"] /= 2
            r["p50_ci_ms"] = [v / 2 for v in r["p50_ci_ms"]]
    slow = regressions(report, old)
    assert slow and all(s.startswith("onnx @") for s in slow)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(Exception, match="not a bench.json"):
        read_baseline(tmp_path / "bad.json")


# --- errors a user can cause: one line --------------------------------------------------------------

def test_user_errors_are_bench_errors(tiny_art, tmp_path):
    art, data = tiny_art
    cases = [
        (BenchSettings(artifacts=tmp_path / "nope"), "no such folder"),
        (BenchSettings(artifacts=tmp_path), "no models to benchmark"),
        (BenchSettings(artifacts=art, formats=("onnx", "tflight")), "unknown format 'tflight'"),
        (BenchSettings(artifacts=art, formats=("onnx-int8",)), "model.int8.onnx not found"),
        (BenchSettings(artifacts=art, batch_sizes=(0,)), "0 is not a batch size"),
        (BenchSettings(artifacts=art, min_accuracy=99.0), "fraction 0..1"),
        (BenchSettings(artifacts=art, formats=("onnx",), data_dir=str(tmp_path), **FAST),
         re.escape(f"onnx: the benchmark worker failed (exit 3): {tmp_path}: no mnist test set here")),
    ]
    for cfg, why in cases:
        with pytest.raises(BenchError, match=why):
            run_bench(cfg)


def test_a_failing_worker_is_one_line(tiny_art, tmp_path):
    _, data = tiny_art
    (tmp_path / "model.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(BenchError) as e:
        run_bench(BenchSettings(artifacts=tmp_path, data_dir=str(data), write=False, **FAST))
    msg = str(e.value)
    assert msg.startswith("onnx: the benchmark worker failed (exit 3): ") and "corrupt or not an ONNX model" in msg
    assert "\n" not in msg and "Traceback" not in msg
    with pytest.raises(BenchError, match="did not finish in 0.01 s and was stopped"):
        run_bench(BenchSettings(artifacts=tiny_art[0], formats=("onnx",), data_dir=str(data),
                              worker_timeout_s=0.01, **FAST))


def test_a_crashing_worker_is_one_line(tiny_art, tmp_path, monkeypatch):
    crash = tmp_path / "python"
    crash.write_text("#!/bin/sh\necho 'Segmentation fault' >&2\nkill -SEGV $$\n")
    crash.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(crash))  # the worker's interpreter dies at once
    with pytest.raises(BenchError) as e:
        run_bench(BenchSettings(artifacts=tiny_art[0], formats=("onnx",), **FAST))
    assert str(e.value) == "onnx: the benchmark worker failed (killed by signal 11): Segmentation fault"


# --- the CLI --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cli_group():
    from mnist_edge.cli import cli

    return cli


def _invoke(runner, group, *args):
    return runner.invoke(group, ["bench", *args])


def test_cli_min_accuracy_gate(tiny_art, tmp_path, runner, cli_group):
    art, data = tiny_art
    for name in ("model.pth", "model.onnx"):
        (tmp_path / name).write_bytes((art / name).read_bytes())
    common = ["--artifacts", str(tmp_path), "--data-dir", str(data), "--formats", "onnx", "--batch-sizes", "1",
              "--threads", "1", "--min-time", "0.01"]
    acc = _accuracy(art / "model.onnx", data)
    assert acc < 0.99  # a random model

    res = _invoke(runner, cli_group, *common, "--min-accuracy", "0.99")
    assert res.exit_code == 1
    err = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert err == [f"Error: accuracy below --min-accuracy 99.00%: onnx {100 * acc:.2f}%"]
    assert "Traceback" not in res.output

    res = _invoke(runner, cli_group, *common, "--min-accuracy", "0.0", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["passed"] is True and doc["min_accuracy"] == 0.0
    assert [(r["format"], r["batch_size"], r["accuracy"]) for r in doc["results"]] == [("onnx", 1, acc)]
    assert json.loads((tmp_path / "bench.json").read_text())["results"] == doc["results"]


def test_cli_help(runner, cli_group):
    res = _invoke(runner, cli_group, "--help")
    assert res.exit_code == 0
    for opt in ("--artifacts", "--formats", "--batch-sizes", "--threads", "--min-time", "--rounds",
                "--min-accuracy", "--baseline", "--data-dir", "--json"):
        assert opt in res.output


def test_cli_bad_formats_is_one_line(tiny_art, runner, cli_group):
    art, _ = tiny_art
    res = _invoke(runner, cli_group, "--artifacts", str(art), "--formats", "onnx,onxx")
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [
        f"Error: --formats: unknown format 'onxx' (known: {', '.join(FORMATS)})"]
    res = _invoke(runner, cli_group, "--artifacts", str(art), "--batch-sizes", "1,big")
    assert res.exit_code == 1
    assert res.output.strip() == "Error: --batch-sizes: 'big' is not a whole number (e.g. 1,32,256)"
