"""ExecuTorch format: round trip, metadata, fixed batch, bad files, missing extra (tiny random model)."""

from __future__ import annotations

import builtins
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("executorch")

from mnist_edge.core.errors import MissingExtraError, ModelFileError  # noqa: E402
from mnist_edge.core.formats import FORMATS  # noqa: E402
from mnist_edge.core.metadata import ModelMetadata  # noqa: E402
from mnist_edge.pytorch.exporters import executorch as ex  # noqa: E402
from mnist_edge.pytorch.models import build  # noqa: E402
from mnist_edge.pytorch.runtimes import executorch as rx  # noqa: E402

FP32, INT8 = FORMATS["executorch"], FORMATS["executorch-int8"]
ARGS = {"channels": [4, 8, 8]}  # tiny: exports in seconds


def _inputs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, 28, 28)).astype(np.float32)


@pytest.fixture(scope="module")
def job():
    torch.manual_seed(0)
    model = build("edgenet", ARGS).eval()
    meta = ModelMetadata(arch="edgenet", arch_args=ARGS, test_acc=0.5)
    return SimpleNamespace(model=model, metadata=meta, calibration=_inputs(16, 1), sources={})


@pytest.fixture(scope="module")
def files(job, tmp_path_factory):
    out = tmp_path_factory.mktemp("et")
    metas = {"fp32": ex.export_fp32(job, FP32, out / FP32.filename),
             "int8": ex.export_int8(job, INT8, out / INT8.filename)}
    return out, metas


def _reference(job, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return job.model(torch.from_numpy(x)).numpy()


def test_fp32_round_trip_and_fixed_batch(job, files):
    out, _ = files
    rt = rx.load(out / FP32.filename, FP32)
    assert rt.batch == 1
    x = _inputs(7)  # N=7 > the fixed batch: run loops
    y = rt.run(x)
    assert y.shape == (7, 10) and y.dtype == np.float32
    assert np.abs(y - _reference(job, x)).max() < 1e-4
    assert np.array_equal(rt.run(x[:1]), y[:1])
    assert rt.run(x[:0]).shape == (0, 10)


def test_int8_round_trip(job, files):
    out, metas = files
    rt = rx.load(out / INT8.filename, INT8)
    y, ref = rt.run(_inputs(7)), _reference(job, _inputs(7))
    assert y.shape == (7, 10) and np.isfinite(y).all()
    assert np.abs(y - ref).max() < 0.5 * np.abs(ref).max()  # int8: close, not exact
    assert "int8" in metas["int8"].quantization and "16 calibration images" in metas["int8"].quantization


def test_metadata_travels_inside(files):
    out, metas = files
    for fmt, key in ((FP32, "fp32"), (INT8, "int8")):
        meta = rx.load(out / fmt.filename, fmt).metadata
        assert meta == metas[key]
        assert meta.arch_args == ARGS and meta.test_acc == 0.5 and "executorch" in meta.versions
    assert metas["fp32"].quantization is None
    assert not list(out.glob("*.json"))  # no sidecar


def test_threads_resize_keeps_runtimes_valid(job, files):
    out, _ = files
    rt = rx.load(out / FP32.filename, FP32, threads=1)
    assert rx.thread_count() == 1
    x = _inputs(3)
    before = rt.run(x)
    rx.set_threads(2)  # frees the pool rt's method was built on: rt must re-load, not crash
    assert rx.thread_count() == 2
    assert np.array_equal(rt.run(x), before)
    rx.set_threads(1)


def test_run_rejects_wrong_shape(files):
    out, _ = files
    with pytest.raises(ValueError, match="expected input"):
        rx.load(out / FP32.filename, FP32).run(np.zeros((2, 28, 28), np.float32))


def _bad_files(good: Path, tmp: Path, onnx_bytes: bytes) -> dict[str, Path]:
    data = good.read_bytes()
    corrupt = bytearray(data)
    corrupt[200:300] = b"\x7f" * 100  # inside the flatbuffer: fails ExecuTorch's verification
    variants = {
        "empty": b"",
        "random": np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "onnx": onnx_bytes,
        "truncated": data[: len(data) // 2],
        "truncated-tail": data[:-10],
        "corrupt": bytes(corrupt),
    }
    paths = {}
    for name, content in variants.items():
        paths[name] = tmp / f"{name}.pte"
        paths[name].write_bytes(content)
    return paths


@pytest.mark.parametrize("kind", ["empty", "random", "onnx", "truncated", "truncated-tail", "corrupt"])
def test_bad_file_is_one_line_error(files, tmp_path, kind):
    out, _ = files
    # an ONNX file starts with a protobuf field tag (0x08 = ir_version), never with a .pte header
    onnx_like = b"\x08\x08\x12\x0bmnist-edge" + bytes(range(256)) * 4
    path = _bad_files(out / FP32.filename, tmp_path, onnx_like)[kind]
    with pytest.raises(ModelFileError) as e:
        rx.load(path, FP32)
    msg = str(e.value)
    assert msg.startswith(str(path)) and "\n" not in msg


def _run_fresh(code: str) -> subprocess.CompletedProcess:
    """Run `code` in a new interpreter (import-time noise included), with the warnings users see."""
    env = {k: v for k, v in os.environ.items() if k != "MNIST_EDGE_SHOW_WARNINGS"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, env=env)


def test_random_bytes_do_not_abort_the_process(files, tmp_path):
    """Without the header pre-check, ExecuTorch's logger aborts the process on non-UTF-8 bytes."""
    path = _bad_files(files[0] / FP32.filename, tmp_path, b"")["random"]
    r = _run_fresh(f"""
        from types import SimpleNamespace
        from mnist_edge.core.errors import ModelFileError
        from mnist_edge.pytorch.runtimes import executorch as rx
        try:
            rx.load({str(path)!r}, SimpleNamespace(name="executorch"))
        except ModelFileError as e:
            print("ok", e)
    """)
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stderr[-500:]
    assert r.stderr == ""


def test_corrupt_weights_fail_the_checksum(files, tmp_path):
    """Damage past the flatbuffer (weights, XNNPACK payload) is caught before XNNPACK parses it."""
    good = files[0] / FP32.filename
    data = bytearray(good.read_bytes())
    start = rx.parse_header(bytes(data)).segment_offset
    data[start + 200:start + 210] = b"\x82" * 10
    path = tmp_path / "damaged.pte"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        rx.load(path, FP32)


def test_export_and_load_are_silent(tmp_path):
    """Nothing reaches stdout/stderr: not the imports, the export, the load or a run."""
    r = _run_fresh(f"""
        from pathlib import Path
        from types import SimpleNamespace
        import numpy as np
        from mnist_edge.core.formats import FORMATS
        from mnist_edge.core.metadata import ModelMetadata
        from mnist_edge.pytorch.exporters import executorch as ex
        from mnist_edge.pytorch.models import build
        from mnist_edge.pytorch.runtimes import executorch as rx
        job = SimpleNamespace(model=build("edgenet", {ARGS!r}).eval(), sources={{}},
                              metadata=ModelMetadata(arch="edgenet", arch_args={ARGS!r}),
                              calibration=np.zeros((2, 1, 28, 28), np.float32))
        for name, export in (("executorch", ex.export_fp32), ("executorch-int8", ex.export_int8)):
            fmt = FORMATS[name]
            export(job, fmt, Path({str(tmp_path)!r}) / fmt.filename)
            rx.load(Path({str(tmp_path)!r}) / fmt.filename, fmt, threads=1).run(np.zeros((3, 1, 28, 28), np.float32))
    """)
    assert r.returncode == 0, r.stderr[-800:]
    assert r.stdout == "" and r.stderr == ""


def test_pte_without_metadata_is_not_ours(tmp_path):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    with ex.quiet():
        ep = torch.export.export(torch.nn.Flatten().eval(), (torch.zeros(1, 1, 28, 28),))
        buffer = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch().buffer
    path = tmp_path / "foreign.pte"
    path.write_bytes(buffer)
    with pytest.raises(ModelFileError, match="not an mnist-edge model"):
        rx.load(path, FP32)


def _hide_executorch(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "executorch" or name.startswith("executorch."):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    for mod in [m for m in sys.modules if m == "executorch" or m.startswith("executorch.")]:
        monkeypatch.delitem(sys.modules, mod)


def test_missing_extra_names_it(files, monkeypatch):
    out, _ = files
    _hide_executorch(monkeypatch)
    with pytest.raises(MissingExtraError, match=r"install mnist-edge\[executorch\]"):
        rx.load(out / FP32.filename, FP32)


def test_missing_extra_on_export(job, tmp_path, monkeypatch):
    _hide_executorch(monkeypatch)
    with pytest.raises(MissingExtraError, match=r"install mnist-edge\[executorch\]"):
        ex.export_fp32(job, FP32, tmp_path / "model.pte")
