"""The exact integer reference of the int8 ONNX graph: ONNX Runtime computes it on every x86 kind, the AVX2 path
included (run under QEMU's Haswell CPU, whatever this machine is), and `check` reports a runtime that cannot."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mnist_edge.core import cpu
from mnist_edge.core.errors import ModelFileError
from mnist_edge.core.formats import FORMATS

from .conftest import make_int8

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("torch", reason="making the test models needs the train extra")

from mnist_edge.quant import reference  # noqa: E402  (needs onnx)

QEMU_X86 = shutil.which("qemu-x86_64-static") or shutil.which("qemu-x86_64")
needs_qemu_x86 = pytest.mark.skipif(
    QEMU_X86 is None or cpu.cpu_info()["machine"] != "x86_64",
    reason="the AVX2 path is run under QEMU user mode: needs an x86-64 host and qemu-x86_64-static "
           "(apt-get install qemu-user-static, or `make toolchains`)")
AVX2_ONLY = {"model": "test", "machine": "x86_64", "features": ["avx2", "fma"], "kind": "AVX2 only"}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A tiny random edgenet and conv2pool-fc2 with the default recipe (7-bit weights), and an edgenet with 8-bit."""
    from mnist_edge.core.settings import DEFAULT_INT8_RECIPE, Int8Recipe

    root = tmp_path_factory.mktemp("int8")
    out = {"edgenet": make_int8("edgenet", root / "a", {"channels": [4, 8, 16]}, seed=3),
           "fc2": make_int8("conv2pool-fc2", root / "b", seed=5)}
    assert DEFAULT_INT8_RECIPE.reduce_range
    full = root / "c"
    out["8-bit"] = make_int8("edgenet", full, {"channels": [4, 8, 16]}, seed=3,
                             recipe=Int8Recipe(reduce_range=False))
    return out


def inputs(n: int, seed: int = 0) -> np.ndarray:
    """Normal noise, a checkerboard far out of range (saturated activations) and a blank image."""
    x = np.random.default_rng(seed).normal(0.0, 1.5, (n, 1, 28, 28)).astype(np.float32)
    checker = np.where(np.indices((28, 28)).sum(0) % 2 == 0, 100.0, -100.0).astype(np.float32)
    return np.concatenate([x, checker[None, None], np.zeros((1, 1, 28, 28), np.float32)])


def ort_logits(model: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_default_recipe_has_seven_bit_weights(models):
    assert reference.widest_weight(reference.load(models["edgenet"]).program) <= reference.SEVEN_BITS
    assert reference.widest_weight(reference.load(models["8-bit"]).program) > reference.SEVEN_BITS


@pytest.mark.parametrize("name", ["edgenet", "fc2"])
def test_onnxruntime_here_computes_the_reference(models, name):
    """7-bit weights: the same bits on this CPU, whichever x86 kind (or ARM) it is."""
    x = inputs(200)
    assert np.array_equal(reference.reference_logits(models[name], x), ort_logits(models[name], x))


_AVX2_SCRIPT = """
import sys, numpy as np, onnxruntime as ort
x = np.load(sys.argv[2])
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
np.save(sys.argv[3], s.run(None, {s.get_inputs()[0].name: x})[0])
"""


def ort_on_avx2(model: Path, x: np.ndarray, tmp: Path) -> np.ndarray:
    """ONNX Runtime's AVX2 kernels (no AVX-512, no VNNI): this venv's Python under `qemu-x86_64 -cpu Haswell`."""
    np.save(tmp / "x.npy", x)
    (tmp / "run.py").write_text(_AVX2_SCRIPT)
    res = subprocess.run([QEMU_X86, "-cpu", "Haswell", sys.executable, str(tmp / "run.py"), str(model),
                          str(tmp / "x.npy"), str(tmp / "y.npy")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    return np.load(tmp / "y.npy")


@needs_qemu_x86
@pytest.mark.parametrize("name", ["edgenet", "fc2"])
def test_onnxruntime_on_avx2_computes_the_reference(models, name, tmp_path):
    x = inputs(60)
    assert np.array_equal(ort_on_avx2(models[name], x, tmp_path), reference.reference_logits(models[name], x))


@needs_qemu_x86
def test_eight_bit_weights_saturate_on_avx2_and_check_says_why(models, tmp_path, monkeypatch):
    """The failure the default recipe avoids: on AVX2, u8 x s8 pairs added in int16 saturate."""
    model, x = models["8-bit"], inputs(60)
    exact = reference.reference_logits(model, x)
    assert not np.array_equal(ort_on_avx2(model, x, tmp_path), exact)
    monkeypatch.setattr(cpu, "cpu_info", lambda: AVX2_ONLY)
    rt = FORMATS["onnx-int8"].load(model)
    why = reference.inexact_reason(rt, reference.load(model).program)
    assert why and "without VNNI" in why and "7-bit" in why
    # held to the reference anyway: a bit-exact result passes; a differing one is reported, not failed
    assert reference.hold(exact, exact, rt, reference.load(model).program, model)[0] == []
    failures, report = reference.hold(exact + 0.5, exact, rt, reference.load(model).program, model)
    assert failures == [] and report["bit_exact"] is False and report["expected"] is False


def test_a_runtime_that_must_be_exact_fails_when_it_is_not(models):
    model = models["edgenet"]
    rt, program = FORMATS["onnx-int8"].load(model), reference.load(model).program
    exact = reference.reference_logits(model, inputs(10))
    failures, report = reference.hold(exact + np.float32(1e-3), exact, rt, program, model)
    assert report["expected"] and not report["bit_exact"]
    assert len(failures) == 1 and "integer reference of model.int8.onnx" in failures[0]


def test_vnni_and_arm_sum_in_int32(models, monkeypatch):
    model = models["8-bit"]
    rt, program = FORMATS["onnx-int8"].load(model), reference.load(model).program
    for info in ({**AVX2_ONLY, "features": ["avx2", "avx512f", "avx512_vnni"]},
                 {"model": "a76", "machine": "aarch64", "features": ["neon", "dotprod"], "kind": "ARM64"}):
        monkeypatch.setattr(cpu, "cpu_info", lambda info=info: info)
        assert reference.inexact_reason(rt, program) is None


def test_reference_of_garbage_is_one_line(tmp_path, models):
    bad = tmp_path / "model.int8.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="cannot read the int8 ONNX model"):
        reference.load(bad)
    fp32 = models["edgenet"].parent / "model.onnx"
    with pytest.raises(ModelFileError, match=str(fp32)):
        reference.load(fp32)  # a float graph has no integer program


def test_rounding_is_half_to_even_and_nan_is_the_low_end():
    v = np.array([0.5, 1.5, 2.5, -0.5, np.nan, 1e9, -1e9], np.float32)
    assert reference.to_u8(v, 10).tolist() == [10, 12, 12, 10, 0, 255, 0]


def test_recipe_description_names_the_weight_range():
    from mnist_edge.core.settings import DEFAULT_INT8_RECIPE

    assert "7-bit weight range" in DEFAULT_INT8_RECIPE.describe()
    assert "7-bit" not in replace(DEFAULT_INT8_RECIPE, reduce_range=False).describe()
