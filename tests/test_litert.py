"""Tests of the LiteRT/TFLM exporters and loaders on a tiny random EdgeNet (no data, no checkpoint)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest

from mnist_edge.core.errors import ModelFileError
from mnist_edge.core.formats import FORMATS
from mnist_edge.core.metadata import METADATA_KEY, ModelMetadata
from mnist_edge.core.quiet import native_output_dropped
from mnist_edge.edge.runtimes import litert as runtime_litert
from mnist_edge.edge.runtimes import tflite_model
from mnist_edge.edge.runtimes import tflm as runtime_tflm
from mnist_edge.pytorch.exporters import litert as exporter_litert
from mnist_edge.pytorch.exporters import tflm as exporter_tflm

torch = pytest.importorskip("torch")
FMT = {"litert": FORMATS["tflite"], "litert-int8": FORMATS["tflite-int8"], "tflm-int8": FORMATS["tflm-int8"]}


@pytest.fixture(scope="module")
def job():
    from mnist_edge.pytorch.models import build

    torch.manual_seed(0)
    model = build("edgenet", {"channels": [4, 8, 8]}).eval()
    with torch.no_grad():  # give BatchNorm non-trivial statistics, as a trained model has
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    meta = ModelMetadata(arch="edgenet", arch_args={"channels": [4, 8, 8]}, seed=0)
    calibration = np.random.default_rng(0).standard_normal((32, 1, 28, 28)).astype(np.float32)
    return SimpleNamespace(model=model, metadata=meta, calibration=calibration, sources={})


@pytest.fixture(scope="module")
def files(job, tmp_path_factory):
    out = tmp_path_factory.mktemp("litert")
    fp32, int8 = out / "model.tflite", out / "model.int8.tflite"
    int8_meta = exporter_litert.export_int8(job, FMT["litert-int8"], int8)
    exporter_litert.export_fp32(job, FMT["litert"], fp32)
    job.sources["tflite-int8"] = int8
    tflm = out / "tflm"
    exporter_tflm.export(job, FMT["tflm-int8"], tflm)
    return SimpleNamespace(fp32=fp32, int8=int8, tflm=tflm, int8_meta=int8_meta, out=out)


def _inputs(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, 28, 28)).astype(np.float32)


def _torch(job, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return job.model(torch.from_numpy(x)).numpy()


def test_fp32_round_trip_any_batch(job, files):
    rt = runtime_litert.load(files.fp32, FMT["litert"], threads=1)
    assert rt.dynamic_batch and rt.input_quant is None
    x = _inputs(40)
    for n in (1, 7, 40, 1, 0):
        y = rt.run(x[:n])
        assert y.shape == (n, 10) and y.dtype == np.float32
        if n:
            assert np.abs(y - _torch(job, x[:n])).max() <= 1e-4


def test_metadata_read_back(job, files):
    assert runtime_litert.load(files.fp32, FMT["litert"]).metadata == job.metadata
    int8 = runtime_litert.load(files.int8, FMT["litert-int8"]).metadata
    assert int8 == files.int8_meta and "int8" in int8.quantization
    raw = tflite_model.read_metadata(files.fp32.read_bytes(), METADATA_KEY, "m")
    assert ModelMetadata.from_json(raw) == job.metadata


def test_metadata_rewrite_replaces_entry(job, files):
    buf = files.fp32.read_bytes()
    again = tflite_model.with_metadata(buf, METADATA_KEY, b'{"x": 1}')
    assert tflite_model.read_metadata(again, METADATA_KEY, "m") == b'{"x": 1}'
    model = tflite_model.parse(again, "m")
    names = [model.Metadata(i).Name() for i in range(model.MetadataLength())]
    assert names.count(METADATA_KEY.encode()) == 1 and b"min_runtime_version" in names


def test_buffers_are_16_byte_aligned(files):
    for path in (files.fp32, files.int8):
        offsets = tflite_model.buffer_offsets(path.read_bytes())
        assert offsets and all(o % 16 == 0 for o in offsets)


def test_int8_is_full_integer_batch_1(files):
    rt = runtime_litert.load(files.int8, FMT["litert-int8"], threads=1)
    assert not rt.dynamic_batch and rt.input_quant and rt.output_quant
    inp = rt.interpreter.get_input_details()[0]
    assert inp["dtype"] == np.int8 and list(inp["shape"]) == [1, 1, 28, 28]


def test_int8_loader_quantizes_and_dequantizes(job, files):
    rt = runtime_litert.load(files.int8, FMT["litert-int8"], threads=1)
    x = _inputs(5)
    y = rt.run(x)
    (s_in, z_in), (s_out, z_out) = rt.input_quant, rt.output_quant
    for i in range(len(x)):  # by hand: int8 in, int8 out
        rt.interpreter.set_tensor(rt.input_index, tflite_model.quantize(x[i:i + 1], s_in, z_in))
        rt.interpreter.invoke()
        q = rt.interpreter.get_tensor(rt.output_index)
        assert np.array_equal(y[i:i + 1], (q.astype(np.float32) - z_out) * np.float32(s_out))
    ref = _torch(job, x)
    assert np.abs(y - ref).max() <= 0.1 * np.abs(ref).max() + 4 * s_out  # close to fp32, in scale


def test_quantize_rounds_like_tflite():
    q = tflite_model.quantize(np.array([0.5, 1.5, -0.5, -1.5, 0.49, 1e9, -1e9], np.float32), 1.0, 0)
    assert q.tolist() == [1, 2, -1, -2, 0, 127, -128]
    assert tflite_model.dequantize(np.array([-128, 0, 127], np.int8), 0.5, -3).tolist() == [-62.5, 1.5, 65.0]


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"not a flatbuffer at all" * 10, "corrupt or not a .tflite model"),
    (b"\x1c\x00\x00\x00TFL3" + b"\x00" * 40, "corrupt or not a .tflite model"),
])
def test_bad_files_one_line_error(tmp_path, content, message):
    path = tmp_path / "bad.tflite"
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as e:
        runtime_litert.load(path, FMT["litert"])
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value) and "\n" not in str(e.value)


def test_truncated_and_missing_files(tmp_path, files):
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(files.fp32.read_bytes()[:5000])
    for path in (cut, tmp_path / "absent.tflite", tmp_path):
        with pytest.raises(ModelFileError) as e:
            runtime_litert.load(path, FMT["litert"])
        assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)


def test_foreign_tflite_is_refused(job, tmp_path):
    plain = tmp_path / "plain.tflite"  # a sound .tflite, but not written by mnist-edge
    plain.write_bytes(exporter_litert._convert(job.model, (torch.zeros(1, 1, 28, 28),)))
    with pytest.raises(ModelFileError, match="not an mnist-edge model"):
        runtime_litert.load(plain, FMT["litert"])


def _run_isolated(code: str) -> str:
    """Run `code` in a fresh interpreter with torch made unimportable; return its stdout."""
    prelude = "import sys; sys.modules['torch'] = None\n"
    done = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_loaders_never_import_torch(files):
    out = _run_isolated(f"""
        import numpy as np, sys
        from types import SimpleNamespace
        from mnist_edge.edge.runtimes import litert as runtime_litert, tflm as runtime_tflm
        x = np.zeros((3, 1, 28, 28), np.float32)
        for p in ({str(files.fp32)!r}, {str(files.int8)!r}):
            assert runtime_litert.load(p, SimpleNamespace(name="x")).run(x).shape == (3, 10)
        assert runtime_tflm.load({str(files.tflm)!r}, SimpleNamespace(name="t")).run(x).shape == (3, 10)
        assert sys.modules["torch"] is None and not [m for m in sys.modules if m.startswith("torch.")]
        print("torch-free")
    """)
    assert "torch-free" in out


def test_missing_runtime_names_the_extra(files):
    out = _run_isolated(f"""
        sys.modules['ai_edge_litert'] = None
        sys.modules['tflite_micro'] = None
        from types import SimpleNamespace
        from mnist_edge.core.errors import MissingExtraError
        from mnist_edge.edge.runtimes import litert as runtime_litert
        try:
            runtime_litert.load({str(files.fp32)!r}, SimpleNamespace(name="x"))
        except MissingExtraError as e:
            print(e)
    """)
    assert "install mnist-edge[litert]" in out


def test_tflm_matches_litert_and_reads_the_c_array(files):
    litert = runtime_litert.load(files.int8, FMT["litert-int8"], threads=1)
    from_folder = runtime_tflm.load(files.tflm, FMT["tflm-int8"])
    from_file = runtime_tflm.load(files.int8, FMT["tflm-int8"])
    assert runtime_tflm.read_c_array(files.tflm / "model_data.cc") == files.int8.read_bytes()
    assert from_folder.metadata == files.int8_meta  # the metadata survives TFLM loading
    x = _inputs(20, seed=2)
    a, b = litert.run(x), from_folder.run(x)
    assert np.array_equal(b, from_file.run(x))
    assert np.abs(a - b).max() <= 2 * litert.output_quant[0] + 1e-6  # kernels may round 1-2 steps apart


def test_tflm_refuses_fp32_and_foreign_folders(files, tmp_path):
    with pytest.raises(ModelFileError, match="not a full-integer int8 model") as e:
        runtime_tflm.load(files.fp32, FMT["tflm-int8"])
    assert str(e.value).startswith(f"{files.fp32}: ")
    with pytest.raises(ModelFileError, match="not a TFLM export folder"):
        runtime_tflm.load(tmp_path, FMT["tflm-int8"])
    cut = tmp_path / "model_data.cc"
    cut.write_text((files.tflm / "model_data.cc").read_text().replace("0x00, ", "", 3))
    with pytest.raises(ModelFileError, match="corrupt model array"):
        runtime_tflm.load(tmp_path, FMT["tflm-int8"])


def test_arena_is_the_smallest_that_works(files):
    model = files.int8.read_bytes()
    arena = runtime_tflm.measure_arena(model)
    example = np.zeros((1, 1, 28, 28), np.int8)
    with native_output_dropped():
        assert runtime_tflm._fits(model, arena, example) and not runtime_tflm._fits(model, arena - 1, example)


def test_resolver_method_names():
    assert [exporter_tflm.resolver_method(op) for op in
            ("CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "FULLY_CONNECTED", "MEAN", "RELU6", "BATCH_MATMUL")] == \
        ["AddConv2D", "AddDepthwiseConv2D", "AddMaxPool2D", "AddFullyConnected", "AddMean", "AddRelu6",
         "AddBatchMatMul"]


def test_tflm_folder_layout_and_readme(files):
    assert sorted(p.name for p in files.tflm.iterdir()) == \
        ["README.md", "model_data.cc", "model_data.h", "model_settings.h"]
    readme = (files.tflm / "README.md").read_text()
    for op in tflite_model.op_names(files.int8.read_bytes()):
        assert f"`{op}` -> `resolver.{exporter_tflm.resolver_method(op)}()`" in readme


CHECK_MAIN = r"""
#include <stdio.h>
#include "model_data.h"
#include "model_settings.h"

struct FakeResolver {  // stands in for tflite::MicroMutableOpResolver: counts registrations
  int added = 0;
  int Add() { ++added; return 0; }
  int AddConv2D() { return Add(); }
  int AddDepthwiseConv2D() { return Add(); }
  int AddMaxPool2D() { return Add(); }
  int AddFullyConnected() { return Add(); }
  int AddMean() { return Add(); }
  int AddReshape() { return Add(); }
  int AddTranspose() { return Add(); }
  int AddQuantize() { return Add(); }
  int AddDequantize() { return Add(); }
  int AddSqueeze() { return Add(); }
};

int main() {
  FakeResolver r;
  if (mnist_edge::AddModelOps(r) != 0 || r.added != mnist_edge::kNumOps) return 1;
  if (reinterpret_cast<uintptr_t>(g_model_data) % 16 != 0) return 2;
  printf("%u %d %d\n", g_model_data_len, mnist_edge::kTensorArenaSize, mnist_edge::kNumClasses);
  for (int p = 0; p < 256; ++p) printf("%d ", mnist_edge::QuantizePixel(static_cast<uint8_t>(p)));
  printf("\n%.6f\n", mnist_edge::DequantizeOutput(100));
  return 0;
}
"""


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs a host C++ compiler")
def test_generated_sources_compile_and_agree(files, tmp_path):
    src = files.tflm
    for name in ("model_data.cc",):
        subprocess.run(["g++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-c", str(src / name),
                        "-o", str(tmp_path / "model_data.o")], check=True)
    (tmp_path / "check.cc").write_text(CHECK_MAIN)
    subprocess.run(["g++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-I", str(src), str(tmp_path / "check.cc"),
                    str(tmp_path / "model_data.o"), "-o", str(tmp_path / "check")], check=True)
    lines = subprocess.run([str(tmp_path / "check")], capture_output=True, text=True, check=True).stdout.splitlines()
    length, arena, classes = map(int, lines[0].split())
    rt = runtime_tflm.load(files.int8, FMT["tflm-int8"])
    assert length == files.int8.stat().st_size and classes == 10
    assert arena == exporter_tflm.arena_with_margin(rt.arena_bytes) and arena % 16 == 0
    meta = rt.metadata  # the firmware's pixel quantization is the loader's, for every pixel value
    expected = tflite_model.quantize(meta.normalize(np.arange(256, dtype=np.uint8).reshape(1, 16, 16)), *rt.input_quant)
    assert [int(v) for v in lines[1].split()] == expected.ravel().tolist()
    assert float(lines[2]) == pytest.approx((100 - rt.output_quant[1]) * rt.output_quant[0], rel=1e-5)


def test_mcu_16k_runs_in_litert_at_any_batch(tmp_path):
    """mcu-16k ends in a Conv over its whole 3x3 map: as a LiteRT model with a dynamic batch, XNNPACK must still
    prepare it (a graph that ends in a flatten Reshape it cannot)."""
    from mnist_edge.pytorch.models import build

    torch.manual_seed(1)
    model = build("mcu-16k").eval()
    job = SimpleNamespace(model=model, metadata=ModelMetadata(arch="mcu-16k", arch_args={}, seed=1))
    exporter_litert.export_fp32(job, FMT["litert"], tmp_path / "m.tflite")
    rt = runtime_litert.load(tmp_path / "m.tflite", FMT["litert"], threads=1)
    x = _inputs(5)
    for n in (1, 5):
        assert np.abs(rt.run(x[:n]) - _torch(job, x[:n])).max() <= 1e-4
