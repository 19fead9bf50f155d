"""`mnist-edge bench`: statistics, the report files, the accuracy gate and one-line errors, on a tiny model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_edge import bench
from mnist_edge.bench import BenchConfig, BenchError, run_bench
from mnist_edge.formats import FORMATS, Format

from .conftest import save_random_checkpoint, write_idx_dataset

ROW_KEYS = {"format", "batch_size", "latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "throughput_ips",
            "accuracy", "size_bytes", "load_ms", "peak_rss_mb"}
MACHINE_KEYS = {"cpu", "cores", "threads", "python", "torch", "onnxruntime", "date"}
FAST = {"min_time_s": 0.02, "min_iters": 5, "warmup_s": 0.0, "warmup_iters": 2, "threads": 1}


# --- statistics ---------------------------------------------------------------------------------

def test_percentiles_of_known_arrays():
    p = bench.percentiles(np.arange(1, 101))  # 1..100
    assert p == pytest.approx({50: 50.5, 90: 90.1, 99: 99.01})
    assert bench.percentiles([7.0]) == {50: 7.0, 90: 7.0, 99: 7.0}
    assert bench.percentiles([1.0, 3.0], qs=(0, 50, 100)) == {0: 1.0, 50: 2.0, 100: 3.0}
    with pytest.raises(ValueError):
        bench.percentiles([])


def test_throughput_and_speedup_arithmetic():
    assert bench.throughput(32, [0.01] * 10) == pytest.approx(3200.0)  # 320 images in 0.1 s
    assert bench.throughput(1, [0.001, 0.003]) == pytest.approx(500.0)  # 2 images in 4 ms
    with pytest.raises(ValueError):
        bench.throughput(1, [])
    assert bench.speedup(10.0, 2.5) == pytest.approx(4.0)
    assert bench.speedup(None, 2.5) is None and bench.speedup(1.0, None) is None


def test_time_calls_warms_up_then_meets_the_minimum_count_and_the_time_cap():
    calls = []
    t = bench.time_calls(calls.append, 1, min_time_s=0.0, min_iters=7, warmup_iters=3)
    assert len(t) == 7 and len(calls) == 10 and (t >= 0).all()

    import time

    slow = bench.time_calls(lambda _: time.sleep(0.01), None, min_time_s=0.0, min_iters=1000, max_time_s=0.05)
    assert 2 <= len(slow) <= 8  # capped by max_time_s, not 1000 calls
    assert np.median(slow) == pytest.approx(0.01, abs=0.008)


def test_batch_of_repeats_a_small_set():
    x = np.arange(3, dtype=np.float32).reshape(3, 1, 1, 1)
    assert bench.batch_of(x, 2).ravel().tolist() == [0, 1]
    assert bench.batch_of(x, 7).ravel().tolist() == [0, 1, 2, 0, 1, 2, 0]


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
    code = "import sys, mnist_edge.bench; print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- a tiny model, benchmarked for real ---------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_art(tmp_path_factory) -> tuple[Path, Path]:
    """(artifacts with a random edgenet model.pth + model.onnx, synthetic data folder)."""
    from mnist_edge.export import export_models

    root = tmp_path_factory.mktemp("bench")
    data = write_idx_dataset(root / "data", n_train=64, n_test=64)
    art = root / "art"
    art.mkdir()
    save_random_checkpoint(art / "model.pth")
    export_models(art / "model.pth", art, "onnx", quantize=False, data_dir=str(data))
    return art, data


@pytest.fixture(scope="session")
def report(tiny_art):
    art, data = tiny_art
    return run_bench(BenchConfig(artifacts=art, data_dir=str(data), batch_sizes=(1, 4), **FAST))


def _accuracy(path: Path, data: Path) -> float:
    from mnist_edge.data import load_test_split
    from mnist_edge.runtimes import evaluate_runtime, load_runtime

    rt = load_runtime(path)
    return evaluate_runtime(rt, load_test_split(str(data))).accuracy


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
        assert r["iterations"] >= FAST["min_iters"]
        # images/s is the batch over the mean latency
        assert r["throughput_ips"] == pytest.approx(r["batch_size"] * 1e3 / r["latency_ms_mean"], rel=1e-9)
        assert r["accuracy"] == acc[r["format"]]  # the whole (synthetic) test set, as evaluate scores it
        assert r["size_bytes"] == (art / FORMATS[r["format"]].filename).stat().st_size
        assert r["load_ms"] > 0 and r["peak_rss_mb"] > 10
        assert r["torch_imported"] is (r["format"] == "pytorch")  # an ONNX worker never imports torch
    pt1 = report.row("pytorch", 1)
    assert pt1.speedup_vs_pytorch == 1.0 and pt1.accuracy_delta == 0.0
    ox1 = report.row("onnx", 1)
    assert ox1.speedup_vs_pytorch == pytest.approx(pt1.latency_ms_p50 / ox1.latency_ms_p50)
    assert ox1.accuracy_delta == pytest.approx(acc["onnx"] - acc["pytorch"])
    assert doc == json.loads(json.dumps(report.to_json()))  # the file is what --json prints


def test_markdown_table_and_plot_are_written(tiny_art, report):
    art, _ = tiny_art
    md = (art / "bench.md").read_text()
    assert "| Format | Size (MB) | Accuracy (%) |" in md and "p50 ms @1" in md and "images/s @4" in md
    onnx_line = next(ln for ln in md.splitlines() if ln.startswith("| onnx |"))
    r1, r4 = report.row("onnx", 1), report.row("onnx", 4)
    assert f"| {r1.latency_ms_p50:.3f} | {r1.latency_ms_p99:.3f} | {r4.throughput_ips:,.0f} |" in onnx_line
    assert f"{r1.speedup_vs_pytorch:.2f}x" in onnx_line
    assert sum(ln.startswith("| pytorch |") for ln in md.splitlines()) == 1 + 2  # summary + 2 batch sizes
    png = (art / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert not list(art.glob("*.tmp"))  # written atomically


def test_a_format_added_to_the_table_is_benchmarked_without_changes(tiny_art, tmp_path, monkeypatch):
    art, data = tiny_art
    (tmp_path / "model.copy.onnx").write_bytes((art / "model.onnx").read_bytes())
    monkeypatch.setitem(FORMATS, "onnx-copy", Format("onnx-copy", "model.copy.onnx", "onnx"))
    rep = run_bench(BenchConfig(artifacts=tmp_path, data_dir=str(data), batch_sizes=(2,), write=False, **FAST))
    assert [(r.format, r.batch_size) for r in rep.results] == [("onnx-copy", 2)]
    assert rep.results[0].accuracy == _accuracy(art / "model.onnx", data)
    assert rep.results[0].speedup_vs_pytorch is None  # no PyTorch reference in this run


# --- errors a user can cause: one line --------------------------------------------------------------

def test_user_errors_are_bench_errors(tiny_art, tmp_path):
    art, data = tiny_art
    cases = [
        (BenchConfig(artifacts=tmp_path / "nope"), "no such folder"),
        (BenchConfig(artifacts=tmp_path), "no models to benchmark"),
        (BenchConfig(artifacts=art, formats=("onnx", "tflite")), "unknown format 'tflite'"),
        (BenchConfig(artifacts=art, formats=("onnx-int8",)), "model.int8.onnx not found"),
        (BenchConfig(artifacts=art, batch_sizes=(0,)), "0 is not a batch size"),
        (BenchConfig(artifacts=art, min_accuracy=99.0), "fraction 0..1"),
        (BenchConfig(artifacts=art, formats=("onnx",), data_dir=str(tmp_path), **FAST),
         re.escape(f"onnx: the benchmark worker failed (exit 3): {tmp_path}: no mnist test set here")),
    ]
    for cfg, why in cases:
        with pytest.raises(BenchError, match=why):
            run_bench(cfg)


def test_a_failing_worker_is_one_line(tiny_art, tmp_path):
    _, data = tiny_art
    (tmp_path / "model.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(BenchError) as e:
        run_bench(BenchConfig(artifacts=tmp_path, data_dir=str(data), write=False, **FAST))
    msg = str(e.value)
    assert msg.startswith("onnx: the benchmark worker failed (exit 3): ") and "corrupt or not an ONNX model" in msg
    assert "\n" not in msg and "Traceback" not in msg
    with pytest.raises(BenchError, match="did not finish in 0.01 s"):
        run_bench(BenchConfig(artifacts=tiny_art[0], formats=("onnx",), data_dir=str(data),
                              worker_timeout_s=0.01, **FAST))


def test_a_crashing_worker_is_one_line(tiny_art, tmp_path, monkeypatch):
    crash = tmp_path / "python"
    crash.write_text("#!/bin/sh\necho 'Segmentation fault' >&2\nkill -SEGV $$\n")
    crash.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(crash))  # the worker's interpreter dies at once
    with pytest.raises(BenchError) as e:
        run_bench(BenchConfig(artifacts=tiny_art[0], formats=("onnx",), **FAST))
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
    for opt in ("--artifacts", "--formats", "--batch-sizes", "--threads", "--min-time", "--min-accuracy",
                "--data-dir", "--json"):
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
