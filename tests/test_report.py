"""`mnist-edge report`: one self-contained page from a run's result files, and the README's table from the same code.

Fast: a fake artifacts folder of small result files written by the writers' own classes (check, bench)
or in their format (metrics.json, tune.json), with tiny PNGs; no training. The browser test loads the
page from file:// in Debian's Chromium and skips, saying why, without Chromium or playwright.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from mnist_edge.cli import cli
from mnist_edge.verify.bench.report import BenchReport, BenchRow, machine_info
from mnist_edge.verify.parity import CheckReport, FormatResult
from mnist_edge.verify.report import sources

# A CPU no test machine has, so that nothing here passes only on the CPU it runs on.
FAKE_CPU = {"model": "Test CPU 9000", "machine": "x86_64", "features": ["avx2", "fma"], "kind": "AVX2 only"}
CHECK_DATE, BENCH_DATE = "2026-11-30T10:00:00+00:00", "2026-12-01T09:30:00+00:00"
REPO = Path(__file__).resolve().parents[1]
LAYER = {"node": "/features/features.4/Conv", "op": "Conv", "tensor": "relu_1", "quantized": True, "sqnr_db": 31.25,
         "input_sqnr_db": 38.5, "loss_db": 7.25}


def tiny_png(width: int = 6, height: int = 4) -> bytes:
    """A valid RGB PNG of width x height red pixels, made without any imaging library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes([200, 30, 30] * width) for _ in range(height))
    return (sources.PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _machine(date: str) -> dict:
    return {**machine_info(threads=2), "cpu": "Test CPU 9000 (AVX2 only)", "cpu_info": FAKE_CPU, "cores": 2,
            "date": date, "load_avg_1m": 0.5, "python": "3.11.7", "onnxruntime": "1.32.0"}


def write_metrics(folder: Path) -> None:
    epochs = [{"epoch": e, "train_loss": 0.9 - 0.1 * e, "train_acc": 0.9 + 0.02 * e, "test_loss": 0.2 - 0.02 * e,
               "test_acc": 0.95 + 0.0157 * e, "seconds": 12.5, "load_avg_1m": 2.1} for e in (1, 2, 3)]
    del epochs[0]["load_avg_1m"]  # as a metrics.json written before epochs recorded the load
    (folder / "metrics.json").write_text(json.dumps({
        "arch": "edgenet", "dataset": "mnist", "epochs": epochs, "test_acc": epochs[-1]["test_acc"],
        "test_loss": epochs[-1]["test_loss"], "config": {"epochs": 3, "lr": 0.02, "batch_size": 256, "seed": 0},
        "precision": "fp32", "device": "cpu", "threads": 2, "cpu": FAKE_CPU}))
    for name in sources.TRAIN_FIGURES:
        (folder / name).write_bytes(tiny_png())


def write_check(folder: Path, passed: bool = True) -> None:
    def row(fmt, d, agree, acc, **kw):
        return FormatResult(format=fmt, path=str(folder / fmt), max_abs_diff=d, mean_abs_diff=d / 10,
                            top1_agreement=agree, accuracy=acc, accuracy_delta=acc - 0.9971, passed=True,
                            batch_sizes=[1, 256], **kw)

    rows = [row("onnx", 3.3e-6, 1.0, 0.9971), row("onnx-int8", 0.76, 0.9993, 0.9968),
            row("c-int8", 0.76, 0.9993, 0.9968, against={"format": "onnx-int8", "max_abs_diff": 0.0,
                                                          "top1_agreement": 1.0})]
    if not passed:
        rows[1].passed, rows[1].failures = False, ["top-1 agreement 95.00% < 99.00%"]
    data = {**CheckReport(passed, 0.9971, rows).to_json(), "cpu": FAKE_CPU, "machine": _machine(CHECK_DATE)}
    data["per_layer"] = {str(folder / "model.int8.onnx"): [LAYER], str(folder / "model.int8.tflite"):
                         "per-layer error is measured for onnx-int8 only, not tflite-int8"}
    data["results"][1]["exact"] = {"against": "integer reference of model.int8.onnx", "max_abs_diff": 0.0,
                                   "top1_agreement": 1.0, "bit_exact": True, "expected": True, "why": None}
    (folder / "check.json").write_text(json.dumps(data))


def _bench_row(fmt: str, batch: int, p50: float, size: int, footprint: dict | None = None) -> BenchRow:
    return BenchRow(format=fmt, batch_size=batch, latency_ms_p50=p50, latency_ms_p90=p50 * 1.1,
                    latency_ms_p99=p50 * 1.5, p50_ci_ms=(p50 * 0.98, p50 * 1.02), throughput_ips=batch / p50 * 1e3,
                    accuracy=0.9971, size_bytes=size, load_ms=40.0, peak_rss_mb=120.0, accuracy_delta=0.0,
                    speedup=1.0, speedup_ci=(0.9, 1.1), footprint=footprint)


def write_bench(folder: Path) -> None:
    c_fp = {"target": "cortex-m4f", "compiler": "arm-none-eabi-gcc 12.2", "flash_bytes": 108_000,
            "ram_bytes": 9_216, "stack_bytes": 512}
    rows = [_bench_row("pytorch", 1, 0.477, 1_692_697), _bench_row("pytorch", 256, 26.1, 1_692_697),
            _bench_row("onnx", 1, 0.0731, 419_306), _bench_row("onnx", 256, 14.25, 419_306),
            _bench_row("onnx-int8", 1, 0.0612, 120_722), _bench_row("onnx-int8", 256, 10.87, 120_722),
            _bench_row("c-int8", 1, 0.420, 501_000, c_fp), _bench_row("tflite", 1, 0.071, 421_000)]
    device = {"format": "c-int8@cortex-m4", "device": "cortex-m4", "board": "mps2-an386", "core": "cortex-m4",
              "images": 20, "instructions_mean": 8428334.0, "flash_bytes": 109784, "ram_bytes": 11368,
              "stack_bytes": 1024, "compiler": "arm-none-eabi-gcc 12.2", "clock_mhz": 168.0, "ms_estimate": 50.17}
    report = BenchReport(machine=_machine(BENCH_DATE), results=rows,
                         verdict={"batch_size": 1, "fastest": "onnx-int8", "runner_up": "onnx", "ratio": 1.19,
                                  "ci": [1.12, 1.34], "tie": False})
    data = report.to_json()
    data["devices"] = [device]  # emulated Cortex-M rows, where bench ran them
    (folder / "bench.json").write_text(json.dumps(data))
    (folder / "bench.png").write_bytes(tiny_png(12, 5))


def write_tune(folder: Path) -> None:
    cand = {"name": "default", "stage": "recipe", "meets_budget": True, "accuracy": 0.9968, "accuracy_delta": -0.0003,
            "top1_agreement": 0.9993, "size_bytes": 120_722, "chosen": True, "note": "", "failures": [],
            "timing": {"1": {"p50_ms": 0.0612, "p50_ci_ms": [0.06, 0.062]}}, "vs_default": {"ratio": 1.0,
                                                                                           "ci": [1, 1]}}
    (folder / "tune.json").write_text(json.dumps({
        "settings": {"max_drop_points": 0.1, "batch": 1, "threads": 1, "layer_images": 64},
        "cpu": FAKE_CPU, "reference_accuracy": 0.9971, "chosen": "default", "written": str(folder / "model.int8.onnx"),
        "derived": [], "layers": [LAYER],
        "candidates": [cand, {**cand, "name": "per-tensor", "chosen": False, "meets_budget": False,
                              "note": "accuracy drop 0.30 points > 0.10"}]}))
    (folder / "tune.png").write_bytes(tiny_png())


@pytest.fixture
def full(tmp_path) -> Path:
    art = tmp_path / "art"
    art.mkdir()
    write_metrics(art)
    write_check(art)
    write_bench(art)
    write_tune(art)
    return art


def _report(runner, art: Path, *args: str):
    return runner.invoke(cli, ["report", "--artifacts", str(art), *args])


def _one_line_error(res, *words: str) -> None:
    """Exit 1, one 'Error: ...' line naming the problem, no traceback."""
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert "Traceback" not in res.output and not isinstance(res.exception, (KeyError, TypeError, ValueError))
    for w in words:
        assert w in lines[0], lines[0]


def _sections(html: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="([a-z]+)">(.*?)</section>', html, re.S))


def test_the_writers_name_the_files_the_report_reads():
    from mnist_edge.cli.check import RESULT_FILE
    from mnist_edge.pytorch.plots import PLOT_FILES
    from mnist_edge.pytorch.train import METRICS_NAME
    from mnist_edge.verify.bench.report import REPORT_FILES as BENCH_FILES
    from mnist_edge.verify.tune.report import REPORT_FILES as TUNE_FILES

    assert RESULT_FILE == sources.CHECK
    assert METRICS_NAME == sources.METRICS
    assert tuple(PLOT_FILES) == sources.TRAIN_FIGURES
    assert (sources.BENCH, sources.BENCH_FIGURE) == (BENCH_FILES[0], BENCH_FILES[2])
    assert (sources.TUNE, *sources.TUNE_FIGURES) == (TUNE_FILES[0], *TUNE_FILES[2:])


def test_report_has_every_section_with_its_numbers_and_inlined_figures(full, runner):
    res = _report(runner, full)
    assert res.exit_code == 0, res.output
    html, md = (full / "report.html").read_text(), (full / "report.md").read_text()
    sec = _sections(html)
    assert list(sec) == ["summary", "training", "parity", "bench", "devices", "tune", "suite", "where"]
    assert "Not run" not in html.replace(sec["suite"], "")  # the benchmark suite's files are not in this folder
    assert "Not run: <code>make bench-training bench</code>" in sec["suite"]
    assert "99.71%" in sec["training"] and "99.68%" in sec["parity"] and "yes (onnx-int8)" in sec["parity"]
    assert '<th class="n">load (1 min)</th>' in sec["training"] and sec["training"].count('<td class="n">2.1</td>') == 2
    assert "yes (integer reference)" in sec["parity"]
    assert "fastest <strong>onnx-int8</strong>, 1.19x onnx" in sec["bench"]
    assert "105.5 KB" in sec["devices"] and "cortex-m4f" in sec["devices"]  # 108,000 bytes of flash
    assert "<td>cortex-m4 (mps2-an386)</td>" in sec["devices"] and "107.2 KB" in sec["devices"]
    assert "8.428 M (≈50.2 ms at 168 MHz)" in sec["devices"] and "at one instruction per cycle" in sec["devices"]
    assert "per-tensor" in sec["tune"] and "accuracy drop 0.30 points" in sec["tune"]
    for key in ("parity", "tune"):  # the per-layer SQNR table, folded
        assert "<summary>Per-layer int8 error of model.int8.onnx" in sec[key]
        assert "<td>/features/features.4/Conv</td>" in sec[key] and '<td class="n">7.2</td>' in sec[key]
    assert "not tflite-int8" in sec["parity"]
    # every figure inline: 6 training, bench, tune; no file or network reference
    assert html.count('src="data:image/png;base64,') == 8
    assert not re.search(r'(src|href)="(?!data:|#)', html)
    assert "<script" not in html
    # the Markdown links the figures that sit beside it
    assert "![Loss and accuracy per epoch, train and test](graph.png)" in md and "(bench.png)" in md


def test_every_section_says_the_date_and_cpu_kind_of_its_numbers(full, runner):
    assert _report(runner, full).exit_code == 0
    sec = _sections((full / "report.html").read_text())
    for key in ("training", "parity", "bench", "devices", "tune"):
        assert 'class="src"' in sec[key] and "AVX2 only" in sec[key] and "Test CPU 9000" in sec[key], key
    assert "2026-11-30 10:00 UTC" in sec["parity"] and "2026-12-01 09:30 UTC" in sec["bench"]
    assert "onnxruntime 1.32.0" in sec["bench"] and "python 3.11.7" in sec["parity"]
    # the summary mixes two runs: each column says which
    assert "¹ accuracy, agreement, max |Δlogit| and bit-exact: <code>mnist-edge check</code> on all test images, " \
           "2026-11-30, AVX2 only" in sec["summary"]
    assert "² latency, throughput and size: <code>mnist-edge bench</code>, 2026-12-01, AVX2 only" in sec["summary"]
    # metrics.json records no date: the file's time, said as such
    assert "(file time)" in sec["training"]


def test_missing_files_say_not_run_with_the_command(tmp_path, runner):
    art = tmp_path / "art"
    art.mkdir()
    write_metrics(art)
    assert _report(runner, art).exit_code == 0
    html, md = (art / "report.html").read_text(), (art / "report.md").read_text()
    sec = _sections(html)
    assert "summary" not in sec and "99.71%" in sec["training"]
    for key, cmd in (("parity", "check"), ("bench", "bench"), ("tune", "tune"), ("devices", "bench")):
        assert f'Not run: <code>mnist-edge {cmd} --artifacts {art}</code>' in sec[key], key
        assert f"Not run: `mnist-edge {cmd} --artifacts {art}`" in md
    (art / "metrics.json").unlink()
    write_bench(art)
    assert _report(runner, art).exit_code == 0
    sec = _sections((art / "report.html").read_text())
    assert f"Not run: <code>mnist-edge train --out {art}</code>" in sec["training"]
    assert "99.71%" in sec["summary"] and "0.073" in sec["summary"]
    assert "top-1 agreement, max |Δlogit| and bit-exact: not run (<code>mnist-edge check</code>" in sec["summary"]


def test_a_missing_figure_is_named(tmp_path, runner):
    art = tmp_path / "art"
    art.mkdir()
    write_metrics(art)
    (art / "samples.png").unlink()
    assert _report(runner, art).exit_code == 0
    html = (art / "report.html").read_text()
    assert html.count("data:image/png") == 5 and "Figures not written (samples.png)" in html


def test_readme_table_is_the_reports_table(full, runner):
    res = _report(runner, full, "--readme-table")
    assert res.exit_code == 0, res.output
    table = res.output
    assert not (full / "report.html").exists()  # prints only
    lines = table.splitlines()
    assert lines[0].startswith("| format | accuracy¹ | top-1 agreement¹ | max \\|Δlogit\\|¹ | bit-exact¹ | p50 ms @1² "
                               "| images/s @256² | size² |")
    rows = {ln.split(" | ")[0].strip("| "): ln for ln in lines[2:] if ln.startswith("|")}
    assert list(rows) == ["pytorch (reference)", "onnx", "onnx-int8", "c-int8", "tflite"]
    assert rows["tflite"].startswith("| tflite | 99.71%² | – | – | – |")  # bench's accuracy: check did not see it
    assert rows["onnx-int8"] == ("| onnx-int8 | 99.68% | 99.93% | 7.6e-01 | yes (integer reference) | 0.061 | "
                                 "23,551 | 117.9 KB |")
    assert rows["c-int8"].split(" | ")[4] == "yes (onnx-int8)" and rows["c-int8"].endswith("| – | 489.3 KB |")
    assert "2026-11-30, AVX2 only" in table and "2026-12-01, AVX2 only" in table
    # the very same text is in report.md: one code path
    assert _report(runner, full).exit_code == 0
    assert table in (full / "report.md").read_text()


def test_readme_table_needs_check_and_bench(tmp_path, runner):
    art = tmp_path / "art"
    art.mkdir()
    write_check(art)
    _one_line_error(_report(runner, art, "--readme-table"), "bench.json", str(art))


@pytest.mark.parametrize("name, content, words", [
    ("check.json", '{"passed": true, "results": [', ("check.json", "not valid JSON")),
    ("bench.json", '{"machine": {}}', ("bench.json", "'results'")),
    ("bench.json", '[1, 2]', ("bench.json", "not a JSON object")),
    ("metrics.json", '{"epochs": [{"epoch": "one"}]}', ("metrics.json", "'epoch' is not a number")),
    ("tune.json", '{"settings": {"batch": NaN}, "candidates": []}', ("tune.json",)),
    ("check.json", b"\xff\xfe{", ("check.json", "cannot be read")),
    ("graph.png", b"GIF89a not a png at all", ("graph.png", "not a PNG")),
])
def test_a_bad_file_is_one_line_and_nothing_is_half_written(full, runner, name, content, words):
    assert _report(runner, full).exit_code == 0
    before = {n: (full / n).read_bytes() for n in ("report.html", "report.md")}
    path = full / name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    _one_line_error(_report(runner, full), str(path), *words)
    assert {n: (full / n).read_bytes() for n in before} == before  # the previous report is untouched
    assert sorted(p.name for p in full.iterdir() if p.name.startswith(".")) == []  # no temporary left


def test_no_folder_or_no_results_is_one_line(tmp_path, runner):
    _one_line_error(_report(runner, tmp_path / "nowhere"), "no such folder")
    (tmp_path / "empty").mkdir()
    _one_line_error(_report(runner, tmp_path / "empty"), "no results to report")
    assert not (tmp_path / "empty" / "report.html").exists()


def test_report_imports_no_torch_onnx_or_matplotlib(full):
    code = ("import sys; from mnist_edge.cli.report import command; from mnist_edge.verify.report import write_report;"
            f"write_report({str(full)!r}); heavy = {{'torch', 'onnx', 'matplotlib', 'onnxruntime'}} & set(sys.modules);"
            "print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_failing_check_shows_in_the_summary_and_parity(tmp_path, runner):
    art = tmp_path / "art"
    art.mkdir()
    write_check(art, passed=False)
    assert _report(runner, art).exit_code == 0
    sec = _sections((art / "report.html").read_text())
    assert "<strong>Some formats FAIL</strong>: 2 of 3 pass" in sec["parity"]
    assert '<td class="fail">FAIL: top-1 agreement 95.00% &lt; 99.00%</td>' in sec["parity"]
    assert "99.68% (FAIL)" in sec["summary"]


def test_check_writes_check_json_that_the_report_reads(tmp_path, runner, monkeypatch):
    from mnist_edge.core import fileio

    from .conftest import random_onnx_run

    art, data = random_onnx_run(tmp_path, n_test=32)
    res = runner.invoke(cli, ["check", "--artifacts", str(art), "--data-dir", str(data), "--json"])
    printed = json.loads(res.output)
    written = json.loads((art / "check.json").read_text())
    assert {k: v for k, v in written.items() if k != "machine"} == printed  # --json on stdout as before
    assert written["machine"]["date"] and written["machine"]["cpu"]
    assert [r["format"] for r in written["results"]] == ["onnx"]
    assert _report(runner, art).exit_code == 0
    sec = _sections((art / "report.html").read_text())
    assert "<td>onnx</td>" in sec["parity"] and "Not run" in sec["bench"]

    def refuse(path, obj):
        raise fileio.WriteError(f"{path}: could not be written (Read-only file system)")

    monkeypatch.setattr(fileio, "write_json", refuse)  # a folder that cannot be written is still checked
    res = runner.invoke(cli, ["check", "--artifacts", str(art), "--data-dir", str(data)])
    assert res.exit_code == 0 and f"warning: {art / 'check.json'}: could not be written" in res.output, res.output
    assert "all formats pass" in res.output


# --- in Chromium -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    from .conftest import chromium

    yield from chromium()


def test_report_renders_in_chromium_with_every_image_and_no_request(browser, full, runner):
    assert _report(runner, full).exit_code == 0
    url = (full / "report.html").as_uri()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    requests, elsewhere = [], []

    def route(r):
        if urlsplit(r.request.url).scheme in ("file", "data"):
            r.continue_()
        else:
            elsewhere.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page_ = context.new_page()
    errors = []
    page_.on("request", lambda r: requests.append(r.url))
    page_.on("pageerror", lambda e: errors.append(str(e)))
    page_.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page_.goto(url, wait_until="load")
    images = page_.evaluate("[...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    assert len(images) == 8 and all(done and w > 0 and h > 0 for done, w, h in images), images
    assert page_.locator("h1").inner_text().startswith("mnist-edge report")
    assert page_.locator("section").count() == 8 and page_.locator("section#bench table").count() == 2
    assert page_.locator("section#summary tbody tr").count() == 5
    assert elsewhere == [] and errors == []
    assert url in requests  # the watch sees the page's own request...
    assert all(urlsplit(u).scheme in ("file", "data") for u in requests), requests  # ...and nothing else left it
    context.close()


def test_the_benchmark_suites_files_are_lines_with_their_source(tmp_path, runner):
    art = tmp_path / "art"
    art.mkdir()
    (art / "bench_train.json").write_text(json.dumps({
        "arch": "edgenet", "threads": 2, "cpu": FAKE_CPU,
        "loops": {"mnist_edge fp32": {"images_per_s": 4788.2}, "seed": {"images_per_s": 1906.0}},
        "default_run": {"by_precision": {"fp32": {"ratio": 2.512}}}}))
    (art / "bench_small_data.json").write_text(json.dumps({"rows": [
        {"dataset": "mnist", "subset": 1000, "epochs": 3, "mnist_edge_acc": 0.9512, "seed_acc": {"seednet": 0.9001}}]}))
    (art / "predict_cold_start.json").write_text(json.dumps({"runs": 5, "wall_s_p50": 0.254, "peak_rss_mb": 73.4}))
    (art / "serve_load.json").write_text(json.dumps({"requests": 3000, "completed": 3000, "failed": 0, "clients": 16,
                                                     "workers": 1, "req_per_s": 87.9,
                                                     "latency_ms": {"p50": 179.2, "p99": 321.0},
                                                     "machine": "x86_64"}))  # the suite names the platform so
    assert _report(runner, art).exit_code == 0
    suite = _sections((art / "report.html").read_text())["suite"]
    assert "mnist-edge fp32 4,788 images/s, seed 1,906 images/s; mnist-edge / seed: 2.51x (fp32)" in suite
    assert "<td>mnist-edge 95.12%; seed seednet 90.01%</td>" in suite
    assert "0.25 s wall (median of 5), 73 MB peak RSS" in suite
    assert "0 failed, 87.9 requests/s, p50 179 ms, p99 321 ms" in suite
    assert "<code>bench_train.json</code>, " in suite and "AVX2 only" in suite  # the file's CPU kind
    assert suite.count("(file time), CPU kind not recorded") == 3  # the other three record no CPU: said so
    (art / "serve_load.json").write_text(json.dumps({"requests": 3000}))
    _one_line_error(_report(runner, art), "serve_load.json", "'clients'")
