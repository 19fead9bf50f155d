"""The C99 target on a tiny random edgenet: bit-exact with the int8 integer reference, strict compile, refusals,
one-line errors."""

from __future__ import annotations

import copy
import ctypes
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mnist_edge.core.errors import ExportError, MissingExtraError, ModelFileError
from mnist_edge.core.formats import FORMATS
from mnist_edge.edge.runtimes import c as runtime_c
from mnist_edge.edge.runtimes import c_footprint
from mnist_edge.pytorch.exporters import c as exporter_c

from .conftest import make_int8

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
TINY = {"channels": [4, 8, 16]}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Each test compiles into its own cache, so no test sees another's libraries."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory) -> Path:
    return make_int8("edgenet", tmp_path_factory.mktemp("tiny"), TINY, seed=3, calib=16)


@pytest.fixture
def c_model(int8_model, tmp_path) -> Path:
    """The tiny model exported as a C folder (.c, .h, README.txt)."""
    out = tmp_path / "c"
    out.mkdir()
    job = SimpleNamespace(sources={"onnx-int8": int8_model}, calibration=_inputs(32))
    exporter_c.export(job, FORMATS["c-int8"], out)
    return out


def _inputs(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 1.5, (n, 1, 28, 28)).astype(np.float32)


def _exact(model: Path, x: np.ndarray) -> np.ndarray:
    """The exact integer logits of the int8 ONNX file (the same on every CPU)."""
    from mnist_edge.quant.reference import reference_logits

    return reference_logits(model, x)


def _edge_inputs() -> np.ndarray:
    """Blank, saturated, far out of range, a NaN pixel and exact quantization ties."""
    checker = np.where(np.indices((28, 28)).sum(0) % 2 == 0, 100.0, -100.0)
    nan = np.zeros((28, 28))
    nan[3, 4] = np.nan
    ties = (np.arange(784).reshape(28, 28) % 50 - 20 + 0.5) * 0.05
    return np.stack([np.zeros((28, 28)), np.full((28, 28), 3.0), checker, nan, ties]).astype(np.float32)[:, None]


def test_bit_exact_with_the_integer_reference(c_model, int8_model):
    x = np.concatenate([_inputs(300, seed=1), _edge_inputs()])
    got, want = runtime_c.load(c_model, None).run(x), _exact(int8_model, x)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.array_equal(got, want), f"max |Δ| {np.nanmax(np.abs(got - want))}"


def test_batch_sizes_agree(c_model):
    rt, x = runtime_c.load(c_model, None), _inputs(9, seed=2)
    whole = rt.run(x)
    assert np.array_equal(np.concatenate([rt.run(x[i:i + 1]) for i in range(9)]), whole)
    assert rt.run(x[:0]).shape == (0, 10)


def test_raw_pixel_entry_point_normalises_like_numpy(c_model):
    rt = runtime_c.load(c_model, None)
    pixels = np.random.default_rng(4).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    want = rt.run(rt.metadata.normalize(pixels))
    fn = rt._lib.mnist_edge_predict
    fn.argtypes = [ctypes.POINTER(ctypes.c_uint8), ctypes.POINTER(ctypes.c_float)]
    got = np.empty_like(want)
    for img, row in zip(pixels, got, strict=True):
        top = fn(img.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), row.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        assert top == int(row.argmax())
    assert np.array_equal(got, want)


def test_strict_c99_compile(c_model, tmp_path):
    cc = shutil.which("gcc") or pytest.skip("no gcc")
    res = subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-c",
                          str(c_model / exporter_c.C_FILE), "-o", str(tmp_path / "m.o")],
                         check=False, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_export_layout_and_metadata(c_model, int8_model):
    assert sorted(p.name for p in c_model.iterdir()) == sorted([exporter_c.EXAMPLE_DIR, "README.txt",
                                                                "mnist_edge_model.c", "mnist_edge_model.h"])
    meta = runtime_c.read_metadata(c_model)
    assert meta.arch == "edgenet" and meta.arch_args == TINY and len(meta.class_names) == 10
    assert "C99" in meta.quantization and "static QDQ" in meta.quantization
    header = (c_model / exporter_c.H_FILE).read_text()
    assert "#define MNIST_EDGE_NUM_CLASSES 10" in header and "Not reentrant" in header
    assert runtime_c.load(c_model / exporter_c.C_FILE, None).metadata == meta  # the .c path works too


def _edited(model: Path, tmp_path: Path, edit) -> Path:
    proto = onnx.load_model(str(model))
    edit(proto)
    out = tmp_path / "edited.int8.onnx"
    onnx.save_model(proto, str(out))
    return out


def _node(proto, op: str):
    return next(n for n in proto.graph.node if n.op_type == op)


def _set_dilation(proto):
    attr = next(a for a in _node(proto, "Conv").attribute if a.name == "dilations")
    attr.ints[:] = [2, 2]


def _weight_zero_point(proto):
    int8 = {i.name for i in proto.graph.initializer if i.data_type == onnx.TensorProto.INT8}
    name = next(n.input[2] for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in int8)
    init = next(i for i in proto.graph.initializer if i.name == name)
    arr = onnx.numpy_helper.to_array(init).copy()
    arr.flat[0] = 3
    init.CopyFrom(onnx.numpy_helper.from_array(arr, name))


def _append_log_softmax(proto):
    out = proto.graph.output[0]
    last = next(n for n in proto.graph.node if out.name in n.output)
    last.output[0] = "pre_softmax"
    proto.graph.node.append(onnx.helper.make_node("LogSoftmax", ["pre_softmax"], [out.name], axis=1, name="lsm"))


@pytest.mark.parametrize("edit, names", [
    (lambda p: setattr(_node(p, "ReduceMean"), "op_type", "ReduceMax"), "ReduceMax"),
    (_set_dilation, "dilations"),
    (_weight_zero_point, "non-zero weight zero point"),
    (_append_log_softmax, "LogSoftmax"),
])
def test_refuses_what_it_cannot_translate(int8_model, tmp_path, edit, names):
    bad = _edited(int8_model, tmp_path, edit)
    with pytest.raises(ExportError) as e:
        exporter_c.generate(bad)
    msg = str(e.value)
    assert names in msg and "\n" not in msg and str(bad) in msg


def test_no_compiler_is_one_clear_line(c_model, monkeypatch, tmp_path):
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(MissingExtraError) as e:
        runtime_c.load(c_model, None)
    assert "cc" in str(e.value) and "install gcc" in str(e.value) and "\n" not in str(e.value)
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.raises(MissingExtraError, match="nonexistent"):
        runtime_c.load(c_model, None)


def test_cc_may_carry_a_wrapper(c_model, monkeypatch):
    monkeypatch.setenv("CC", f"env {shutil.which('cc') or shutil.which('gcc')}")
    assert runtime_c.load(c_model, None).run(_inputs(2)).shape == (2, 10)


def test_cortex_m4_footprint(c_model, monkeypatch, tmp_path):

    sizes = c_footprint.cross_size(c_model / exporter_c.C_FILE)
    if sizes is None:
        pytest.skip("no arm-none-eabi-gcc")
    assert sizes["flash_bytes"] >= sizes["rodata"] > 0 and sizes["ram_bytes"] > 0 and 0 < sizes["stack_bytes"] < 4096
    monkeypatch.setenv("PATH", str(tmp_path))
    assert c_footprint.cross_size(c_model / exporter_c.C_FILE) is None


def test_compiles_once_then_reuses_the_cache(c_model):
    first = runtime_c.load(c_model, None).library
    stamp = first.stat().st_mtime_ns
    assert runtime_c.load(c_model, None).library == first and first.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("damage, says", [
    (lambda c, h: c.write_bytes(b"\x00\xffnot C at all"), "not an mnist-edge C model"),
    (lambda c, h: c.write_text("int main(void) { return 0; }\n"), "not an mnist-edge C model"),
    (lambda c, h: c.write_text(c.read_text().replace("static void gemm(", "static void gemm(((")), "does not compile"),
    (lambda c, h: h.unlink(), "header"),
    (lambda c, h: c.write_text(c.read_text().replace('"arch": "edgenet"', '"arch": "lenet"', 1)), "disagree"),
    (lambda c, h: c.write_text(c.read_text().replace("mnist-edge-model", "other", 1)), "not an mnist-edge model"),
])
def test_damaged_files_are_one_line_model_file_errors(c_model, damage, says):
    c_path, h_path = c_model / exporter_c.C_FILE, c_model / exporter_c.H_FILE
    damage(c_path, h_path)
    with pytest.raises(ModelFileError) as e:
        runtime_c.load(c_model, None)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_metadata_survives_awkward_class_names(int8_model, tmp_path):
    c_text, h_text, meta = exporter_c.generate(int8_model)
    odd = copy.deepcopy(meta)
    odd.class_names = ["*/ end", 'quote"', "back\\slash", "??/trigraph", "ünï", "5", "6", "7", "8", "9"]
    prog = exporter_c.read_program(onnx.load_model(str(int8_model)), "m", (1, 28, 28))
    c_text, h_text = exporter_c.emit_c(prog, odd)
    out = tmp_path / "odd"
    out.mkdir()
    exporter_c.write_files(c_text, h_text, out)
    rt = runtime_c.load(out, None)
    assert rt.metadata.class_names == odd.class_names
    names = (ctypes.c_char_p * 10).in_dll(rt._lib, "mnist_edge_class_names")
    assert [n.decode("utf-8") for n in names] == odd.class_names


def test_long_metadata_is_a_char_array(int8_model, tmp_path, monkeypatch):
    monkeypatch.setattr(exporter_c, "C_STRING_MAX", 50)
    c_text, h_text, meta = exporter_c.generate(int8_model)
    assert "mnist_edge_metadata_json[] = {" in c_text
    out = tmp_path / "c"
    out.mkdir()
    exporter_c.write_files(c_text, h_text, out)
    assert runtime_c.load(out, None).metadata == meta  # the loader checks the embedded copy matches
    test_strict_c99_compile(out, tmp_path)


@pytest.fixture(scope="module")
def fc2_model(tmp_path_factory) -> Path:
    """conv2pool-fc2: Reshape and two Gemms (the other graph shape the five architectures use)."""
    return make_int8("conv2pool-fc2", tmp_path_factory.mktemp("fc2"), seed=5, calib=16)


def _bit_exact(model: Path, out: Path) -> None:
    c_text, h_text, _ = exporter_c.generate(model)
    out.mkdir()
    exporter_c.write_files(c_text, h_text, out)
    x = np.concatenate([_inputs(100, seed=6), _edge_inputs()])
    assert np.array_equal(runtime_c.load(out, None).run(x), _exact(model, x))


def _reshape_to_flatten(proto):
    node = _node(proto, "Reshape")
    node.op_type, node.input[1:] = "Flatten", []
    del node.attribute[:]  # Reshape's allowzero
    node.attribute.append(onnx.helper.make_attribute("axis", 1))


def _relu_after_logits(proto):
    """Q -> DQ -> Relu -> Q -> DQ at the end, with the logits' own quantization (zero point > 0)."""
    g = proto.graph
    dq = next(n for n in g.node if g.output[0].name in n.output)
    dq.output[0] = "pre_relu_f"
    _, scale, zp = dq.input
    g.node.extend([onnx.helper.make_node("Relu", ["pre_relu_f"], ["relu_f"], name="extra_relu"),
                   onnx.helper.make_node("QuantizeLinear", ["relu_f", scale, zp], ["relu_q"]),
                   onnx.helper.make_node("DequantizeLinear", ["relu_q", scale, zp], [g.output[0].name])])


def test_reshape_and_several_gemms_bit_exact(fc2_model, tmp_path):
    _bit_exact(fc2_model, tmp_path / "c")


def test_flatten_bit_exact(fc2_model, tmp_path):
    _bit_exact(_edited(fc2_model, tmp_path, _reshape_to_flatten), tmp_path / "c")


def test_standalone_relu_bit_exact(int8_model, tmp_path):
    model = _edited(int8_model, tmp_path, _relu_after_logits)
    assert "relu_u8(" in exporter_c.generate(model)[0]
    _bit_exact(model, tmp_path / "c")


def test_odd_channel_counts_bit_exact(tmp_path):
    """Odd channel counts leave a channel without a partner in conv2d's 2-channel passes."""
    _bit_exact(make_int8("edgenet", tmp_path / "odd", {"channels": [3, 5, 7]}, seed=7, calib=16), tmp_path / "c")


def test_conv_weight_layout_holds_every_weight_once():
    w = np.arange(5 * 2 * 3 * 3, dtype=np.int64).reshape(5, 2, 3, 3) % 251 - 125
    packed = exporter_c.conv_weights(w.astype(np.int8))
    assert packed.size == 5 * 20  # rows of 18 padded to 20
    assert sorted(packed.tolist()) == sorted(w.ravel().tolist() + [0] * 10)
    # the first 4 bytes are channel 0's w0, w2, w1, w3; the next 4 channel 1's
    assert packed[:8].tolist() == [w[0].ravel()[i] for i in (0, 2, 1, 3)] + [w[1].ravel()[i] for i in (0, 2, 1, 3)]
