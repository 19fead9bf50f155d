"""Tests of the OpenVINO rows: exporter and torch-free loader on a tiny random EdgeNet, and on real MNIST (slow)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mnist_edge.core.deps import extras as declared_extras
from mnist_edge.core.errors import ModelFileError
from mnist_edge.core.formats import FORMATS, format_of, formats_to_write
from mnist_edge.core.metadata import METADATA_KEY

from .conftest import make_int8, needs_real_data

ov = pytest.importorskip("openvino", reason="OpenVINO tests need openvino: pip install mnist-edge[openvino]")

from mnist_edge.edge.runtimes import openvino as runtime  # noqa: E402  (after the skip: it needs openvino)
from mnist_edge.pytorch.exporters import openvino as exporter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FP32, INT8 = FORMATS["openvino"], FORMATS["openvino-int8"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """model.onnx, model.int8.onnx of a tiny random EdgeNet, and the two IR folders made from them."""
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("openvino")
    int8_onnx = make_int8("edgenet", out, {"channels": [4, 8, 8]})
    job = SimpleNamespace(sources={"onnx": out / "model.onnx", "onnx-int8": int8_onnx})
    metas = {}
    for fmt in (FP32, INT8):
        (out / fmt.filename).mkdir()
        metas[fmt.name] = exporter.export(job, fmt, out / fmt.filename)
    return SimpleNamespace(out=out, onnx=out / "model.onnx", int8_onnx=int8_onnx, fp32=out / FP32.filename,
                           int8=out / INT8.filename, metas=metas)


def _inputs(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, 28, 28)).astype(np.float32)


def test_fp32_matches_onnx_runtime_at_any_batch(files):
    rt = FP32.load(files.fp32, threads=1)
    ort = FORMATS["onnx"].load(files.onnx)
    x = _inputs(40)
    for n in (1, 7, 40, 1, 0):
        y = rt.run(x[:n])
        assert y.shape == (n, 10) and y.dtype == np.float32
        if n:
            assert np.abs(y - ort.run(x[:n])).max() <= 1e-4


def test_runs_at_fp32_with_the_threads_asked(files):
    """The CPU plugin's default precision is bf16 on CPUs with AVX-512 BF16: the loader asks for f32 everywhere."""
    rt = FP32.load(files.fp32, threads=1)
    assert rt.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    assert rt.compiled.get_property("INFERENCE_NUM_THREADS") == 1


def test_output_is_not_overwritten_by_the_next_call(files):
    rt = FP32.load(files.fp32)
    x = _inputs(4)
    first = rt.run(x[:2])
    kept = first.copy()
    rt.run(x[2:])
    assert np.array_equal(first, kept)


def test_int8_runs_the_int8_onnx_model(files):
    """The int8 IR keeps the int8 file's quantization (int8 weights, FakeQuantize) and computes what it computes."""
    xml = (files.int8 / runtime.XML_FILE).read_text()
    assert "FakeQuantize" in xml and 'element_type="i8"' in xml
    assert "FakeQuantize" not in (files.fp32 / runtime.XML_FILE).read_text()
    x = _inputs(200)
    ov8 = INT8.load(files.int8, threads=1).run(x)
    ort8 = FORMATS["onnx-int8"].load(files.int8_onnx).run(x)
    fp32 = FORMATS["onnx"].load(files.onnx).run(x)
    # far closer to the int8 file than the int8 file is to fp32: not an fp32 run of the graph
    assert np.abs(ov8 - ort8).max() <= 0.5 * np.abs(ort8 - fp32).max()
    assert (ov8.argmax(1) == ort8.argmax(1)).mean() >= 0.97


def test_metadata_travels_inside_once(files):
    onnx_meta = FORMATS["onnx"].load(files.onnx).metadata
    int8_onnx_meta = FORMATS["onnx-int8"].load(files.int8_onnx).metadata
    assert FP32.load(files.fp32).metadata == onnx_meta == files.metas["openvino"]
    int8 = INT8.load(files.int8).metadata
    assert int8 == files.metas["openvino-int8"]
    assert "OpenVINO" in int8.quantization and int8_onnx_meta.quantization in int8.quantization
    for folder in (files.fp32, files.int8):  # one copy, ours (the frontend's copy of the ONNX props is dropped)
        assert (folder / runtime.XML_FILE).read_text().count(METADATA_KEY) == 1


def test_registry_rows():
    assert format_of(Path("x") / "openvino") is FP32 and format_of("openvino-int8") is INT8
    assert [f.name for f in formats_to_write("openvino", quantize=False)] == ["onnx", "openvino"]
    assert [f.name for f in formats_to_write("openvino", quantize=True)] == [
        "onnx", "openvino", "onnx-int8", "openvino-int8"]


def test_the_extra_is_declared_everywhere_it_is_named():
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    listed = re.search(r"pip install .*'\.\[([a-z0-9,-]+)\]'", (ROOT / "Makefile").read_text())  # a literal list
    for fmt in (FP32, INT8):
        for extra in (fmt.export_extra, fmt.runtime_extra):
            assert extra in extras and extra in declared_extras()
            assert listed is None or extra in listed.group(1).split(",")
    assert any(req.startswith("openvino") for req in extras["openvino"])


def _bad(folder: Path, tmp_path: Path, kind: str) -> Path:
    bad = tmp_path / kind / "openvino"
    bad.mkdir(parents=True)
    xml, weights = (folder / runtime.XML_FILE).read_bytes(), (folder / runtime.BIN_FILE).read_bytes()
    if kind == "no-xml":
        (bad / runtime.BIN_FILE).write_bytes(weights)
    elif kind == "no-bin":
        (bad / runtime.XML_FILE).write_bytes(xml)
    elif kind == "garbage-xml":
        (bad / runtime.XML_FILE).write_bytes(bytes(range(256)) * 4)
        (bad / runtime.BIN_FILE).write_bytes(weights)
    elif kind == "truncated-xml":
        (bad / runtime.XML_FILE).write_bytes(xml[:len(xml) // 2])
        (bad / runtime.BIN_FILE).write_bytes(weights)
    elif kind == "truncated-bin":
        (bad / runtime.XML_FILE).write_bytes(xml)
        (bad / runtime.BIN_FILE).write_bytes(weights[:len(weights) // 2])
    return bad


@pytest.mark.parametrize("kind", ["no-xml", "no-bin", "garbage-xml", "truncated-xml", "truncated-bin"])
def test_bad_folder_is_one_line_error(files, tmp_path, kind):
    path = _bad(files.fp32, tmp_path, kind)
    with pytest.raises(ModelFileError) as e:
        FP32.load(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg and "Exception from" not in msg


def test_missing_path_and_file_are_one_line_errors(tmp_path):
    for path, says in ((tmp_path / "openvino", "no such model file"), (tmp_path, "not an OpenVINO model folder")):
        with pytest.raises(ModelFileError, match=says) as e:
            FP32.load(path)
        assert "\n" not in str(e.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelFileError, match="not a folder"):
        FP32.load(tmp_path / "file")


def test_foreign_ir_is_refused(files, tmp_path):
    model = ov.Core().read_model(str(files.fp32 / runtime.XML_FILE))
    del model.get_rt_info()[METADATA_KEY]
    (tmp_path / "openvino").mkdir()
    ov.save_model(model, str(tmp_path / "openvino" / runtime.XML_FILE), compress_to_fp16=False)
    with pytest.raises(ModelFileError, match="not an mnist-edge model"):
        FP32.load(tmp_path / "openvino")


def test_cli_names_a_corrupt_folder_in_one_line(files, tmp_path, runner):
    from mnist_edge.cli import cli

    path = _bad(files.fp32, tmp_path, "garbage-xml")
    res = runner.invoke(cli, ["info", "--model", str(path)])
    assert res.exit_code == 1 and str(path) in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def _run_isolated(code: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter with torch and onnx made unimportable."""
    prelude = "import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_loader_never_imports_torch_or_onnx(files):
    done = _run_isolated(f"""
        import numpy as np
        from mnist_edge.core.formats import load_runtime
        x = np.zeros((3, 1, 28, 28), np.float32)
        for p in ({str(files.fp32)!r}, {str(files.int8)!r}):
            assert load_runtime(p).run(x).shape == (3, 10)
        assert not [m for m in sys.modules if m.startswith(("torch.", "onnx.")) and sys.modules[m] is not None]
        print("torch-free")
    """)
    assert done.returncode == 0 and "torch-free" in done.stdout, done.stderr[-2000:]


def test_missing_runtime_names_the_extra(files):
    done = _run_isolated(f"""
        sys.modules['openvino'] = None
        from mnist_edge.core.errors import MissingExtraError
        from mnist_edge.core.formats import load_runtime
        try:
            load_runtime({str(files.fp32)!r})
        except MissingExtraError as e:
            print(e)
    """)
    assert "install mnist-edge[openvino]" in done.stdout, done.stderr[-2000:]


@needs_real_data
@pytest.mark.slow
def test_real_mnist_parity_on_the_whole_test_set(tmp_path):
    """The shipped trained ONNX model, its int8 file calibrated on real training images, and both IRs: the
    parity bars of `check`, held against ONNX Runtime fp32 (within 1e-5 of PyTorch) on all 10,000 images."""
    from mnist_edge.core.data import load_test_split
    from mnist_edge.core.settings import DEFAULT_INT8_RECIPE, ExportSettings
    from mnist_edge.edge.predict import shipped_model_path
    from mnist_edge.pytorch.exporters import onnx_int8
    from mnist_edge.verify.export import calibration_images
    from mnist_edge.verify.parity import compare, reference

    data = os.environ["MNIST_EDGE_DATA"]
    onnx_fp32 = FORMATS["onnx"].load(shipped_model_path())
    meta = onnx_fp32.metadata
    calibration, _ = calibration_images(ExportSettings(data_dir=data), meta)
    int8_onnx = tmp_path / "model.int8.onnx"
    onnx_int8.write(shipped_model_path(), int8_onnx, calibration, DEFAULT_INT8_RECIPE, meta)
    job = SimpleNamespace(sources={"onnx": shipped_model_path(), "onnx-int8": int8_onnx})
    for fmt in (FP32, INT8):
        (tmp_path / fmt.filename).mkdir()
        exporter.export(job, fmt, tmp_path / fmt.filename)
    ref = reference(onnx_fp32, load_test_split(data))
    assert len(ref.labels) == 10_000
    fp32 = compare(ref, FP32.load(tmp_path / FP32.filename), FP32)
    assert fp32.passed and fp32.max_abs_diff <= 1e-4 and fp32.top1_agreement == 1.0, fp32.failures
    int8 = compare(ref, INT8.load(tmp_path / INT8.filename), INT8, sibling=FORMATS["onnx-int8"].load(int8_onnx))
    assert int8.passed, int8.failures
    assert int8.top1_agreement >= 0.995 and int8.accuracy_delta >= -0.002 and int8.against["top1_agreement"] >= 0.999
