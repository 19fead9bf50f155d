"""ARM64 formats on emulated ARM cores: the pieces that need no emulator (fast), and one core for real (slow).

The slow test runs ONNX and LiteRT, fp32 and int8, of the shipped trained model on 200 real test images
on an emulated Cortex-A76 (QEMU user mode) as `check --cpu` does, and skips with the reason where the
emulated userland (`make arm64`) is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_edge.cli import cli
from mnist_edge.core.cpu import _cpuinfo, parse
from mnist_edge.core.errors import MnistEdgeError
from mnist_edge.edge.arm64 import emulator, userland
from mnist_edge.edge.arm64 import worker as arm_worker

from .conftest import REAL_DATA, needs_real_data

QEMU_CORES = ("a64fx", "cortex-a35", "cortex-a53", "cortex-a57", "cortex-a72", "cortex-a76", "max", "neoverse-n1")
SHIPPED = Path(__file__).resolve().parents[1] / "mnist_edge" / "edge" / "assets" / "model.onnx"


# ------------------------------------------------------------------------------------------ core names

@pytest.mark.parametrize("cpu", ["cortex-a53", "cortex-a72", "cortex-a76", " cortex-a76 ", "max,sme=off"])
def test_a_core_qemu_knows_is_taken(cpu):
    assert emulator.check_cpu(cpu, QEMU_CORES) == cpu.strip()


@pytest.mark.parametrize("cpu, says", [
    ("cortex-x99", "unknown ARM core 'cortex-x99': qemu-aarch64-static knows a64fx, cortex-a35"),
    ("", "unknown ARM core ''"),
    ("max", "core 'max' advertises SME"),  # QEMU 7.2's SME makes LiteRT int8 wrong: never the default core
    ("max,sve=off", "use 'max,sme=off'"),
])
def test_a_core_qemu_does_not_know_is_one_line(cpu, says):
    with pytest.raises(MnistEdgeError) as e:
        emulator.check_cpu(cpu, QEMU_CORES)
    assert says in str(e.value) and "\n" not in str(e.value)
    assert not isinstance(e.value, emulator.Unavailable)


def test_without_qemu_a_core_is_unavailable_not_wrong():
    with pytest.raises(emulator.Unavailable, match="qemu-aarch64-static not found .*apt-get install qemu-user-static"):
        emulator.check_cpu("cortex-a76", ())


def test_check_refuses_an_unknown_core_before_anything_runs(runner, tmp_path, monkeypatch):
    monkeypatch.setattr(emulator, "qemu_cpus", lambda: QEMU_CORES)
    res = runner.invoke(cli, ["check", "--artifacts", str(tmp_path / "none"), "--cpu", "cortex-a76",
                              "--cpu", "pentium"])
    assert res.exit_code == 2
    assert "Invalid value for '--cpu': unknown ARM core 'pentium'" in res.output
    assert "Traceback" not in res.output and "no exported models" not in res.output


def test_check_help_names_the_emulated_cores(runner):
    res = runner.invoke(cli, ["check", "--help"])
    assert res.exit_code == 0
    assert "--cpu CORE" in res.output and "cortex-a76" in res.output and "--limit" in res.output


# ------------------------------------------------------------------------------------------ fake /proc/cpuinfo

@pytest.mark.parametrize("cpu, part, kind", [
    ("cortex-a53", "0xd03", "ARM64 (neon)"),
    ("cortex-a72", "0xd08", "ARM64 (neon)"),
    ("cortex-a76", "0xd0b", "ARM64 (neon, dotprod)"),
    ("max,sme=off", "0x051", "ARM64 (neon, dotprod, sve)"),
])
def test_fake_cpuinfo_describes_the_core(tmp_path, cpu, part, kind):
    text = emulator.fake_cpuinfo(cpu, 3)
    (tmp_path / "cpuinfo").write_text(text)
    fields = _cpuinfo(tmp_path / "cpuinfo")  # read as mnist-edge reads a real ARM board's
    assert fields["cpu part"] == part and fields["cpu architecture"] == "8"
    assert parse(fields, "aarch64")["kind"] == kind
    assert [ln.split(":")[1].strip() for ln in text.splitlines() if ln.startswith("processor")] == ["0", "1", "2"]
    assert text.count(f"CPU part\t: {part}") == 3


def test_an_unknown_core_gets_qemus_max_midr():
    assert "CPU implementer\t: 0x00\n" in emulator.fake_cpuinfo("cortex-a710", 1)


def test_the_run_root_is_the_userland_with_its_own_cpuinfo(tmp_path):
    land = userland.Userland(tmp_path / "land")
    for name in ("usr", "etc", "var", "tmp", "dev", "proc"):
        (land.root / name).mkdir(parents=True)
    (land.root / "lib").symlink_to("usr/lib")
    (tmp_path / "run").mkdir()
    root = emulator._run_root(tmp_path / "run", land, "cortex-a53")
    linked = sorted(p.name for p in root.iterdir() if p.is_symlink())
    assert linked == ["etc", "lib", "usr", "var"]  # /tmp, /dev, /proc stay the host's or ours
    assert "CPU part\t: 0xd03" in (root / "proc" / "cpuinfo").read_text()
    assert (root / "usr").resolve() == (land.root / "usr").resolve()


# ------------------------------------------------------------------------------------------ the userland

def test_the_cache_key_names_every_version():
    a = userland.key({"onnxruntime": "1.32.0", "ai-edge-litert": "2.3.0", "numpy": "2.4.6"})
    b = userland.key({"onnxruntime": "1.33.0", "ai-edge-litert": "2.3.0", "numpy": "2.4.6"})
    assert a != b and "onnxruntime1.32.0" in a and "ai-edge-litert2.3.0" in a and a.startswith("bookworm-py3.11")


def test_the_cache_lives_outside_the_repo(tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_EDGE_ARM64_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert userland.cache_root() == tmp_path / "xdg" / "mnist-edge" / "arm64"
    monkeypatch.setenv("MNIST_EDGE_ARM64_CACHE", str(tmp_path / "mine"))
    assert userland.current().folder.parent == tmp_path / "mine"


def test_a_missing_userland_says_to_run_make_arm64(tmp_path, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda cmd: f"/usr/bin/{cmd}")
    land = userland.Userland(tmp_path / "bookworm-x")
    assert userland.problem(land) == (f"no emulated arm64 userland for these versions ({land.folder} not found): "
                                      "run `make arm64`")
    land.folder.mkdir()  # an interrupted build: no .complete
    assert "is incomplete" in userland.problem(land) and "make arm64" in userland.problem(land)
    (land.folder / userland.COMPLETE).write_text("")
    assert "python3.11: not found" in userland.problem(land)
    land.python.parent.mkdir(parents=True)
    land.python.write_text("")
    assert userland.problem(land) is None


def test_no_qemu_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda cmd: None)
    assert userland.problem(userland.Userland(tmp_path)) == (
        "qemu-aarch64-static not found (Debian: apt-get install qemu-user-static)")


def test_check_skips_the_arm64_rows_with_the_reason(tmp_path, monkeypatch):
    from mnist_edge.verify import arm64

    monkeypatch.setenv("MNIST_EDGE_ARM64_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("shutil.which", lambda cmd: f"/usr/bin/{cmd}")
    (tmp_path / "model.onnx").write_bytes(b"x")
    (tmp_path / "model.int8.tflite").write_bytes(b"x")
    rows, skipped = arm64.check_cores(None, tmp_path, ["cortex-a76"])
    assert rows == [] and len(skipped) == 1
    assert skipped[0].startswith("ARM64 rows skipped: no emulated arm64 userland") and "make arm64" in skipped[0]
    rows, skipped = arm64.check_cores(None, tmp_path / "empty", ["cortex-a76"])
    assert skipped == [f"{tmp_path / 'empty'}: no ARM64 formats (ONNX, LiteRT) to run on emulated cores"]


def test_only_onnx_and_litert_are_emulated(tmp_path):
    from mnist_edge.core.formats import FORMATS

    land = userland.Userland(tmp_path)
    (land.site / "onnxruntime").mkdir(parents=True)
    assert emulator.emulable(FORMATS["onnx-int8"].loader, land) is None
    assert "ai_edge_litert is not installed in the arm64 userland" in emulator.emulable(FORMATS["tflite"].loader, land)
    assert "no aarch64 package" in emulator.emulable(FORMATS["executorch"].loader, land)  # its runtime needs torch


def test_a_large_set_is_shared_between_host_cores():
    assert emulator.processes_for(10) == 1
    assert 1 <= emulator.processes_for(10_000) <= min(len(os.sched_getaffinity(0)), 20)


# ------------------------------------------------------------------------------------------ the worker

def test_the_worker_computes_what_the_host_loader_does(tmp_path, capsys):
    from mnist_edge.core.formats import load_runtime

    x = np.random.default_rng(0).normal(size=(5, 1, 28, 28)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert arm_worker.main([str(SHIPPED), str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "2", "1"]) == 0
    timing = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(timing) == {"load_s", "run_s", "run_cpu_s", "features"}
    got = np.load(tmp_path / "y.npy")
    assert got.dtype == np.float32 and got.shape == (5, 10)
    np.testing.assert_array_equal(got, load_runtime(SHIPPED, 1).run(x))


def test_the_shipped_model_on_an_emulated_cortex_a53():
    """A few images through QEMU: the core without dotprod, whose ONNX Runtime kernels differ from the A76's."""
    why = userland.problem()
    if why:
        pytest.skip(why)
    from mnist_edge.core.formats import load_runtime

    x = np.random.default_rng(1).normal(size=(3, 1, 28, 28)).astype(np.float32)
    run = emulator.run(SHIPPED, x, "cortex-a53", batch=2)
    assert run.features == ("asimd",)  # what QEMU's Cortex-A53 shows the runtime: NEON, no dotprod
    assert run.logits.shape == (3, 10) and run.processes == 1
    np.testing.assert_allclose(run.logits, load_runtime(SHIPPED, 1).run(x), atol=1e-4, rtol=0)


def test_the_emulator_side_never_imports_torch():
    code = ("import sys; import mnist_edge.edge.arm64.emulator, mnist_edge.edge.arm64.worker, mnist_edge.verify.arm64; "
            "print(sorted(m for m in ('torch', 'onnx', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------------------------------ one core, for real

def _checkpoint_from_onnx(onnx_path: Path, out: Path) -> None:
    """The shipped edgenet as a model.pth: its folded conv weights, BatchNorm the identity plus the folded bias."""
    import onnx
    import torch
    from onnx import numpy_helper

    from mnist_edge.core.formats import load_runtime
    from mnist_edge.pytorch import checkpoint
    from mnist_edge.pytorch.models import build

    meta = load_runtime(onnx_path).metadata
    w = {i.name: numpy_helper.to_array(i).copy() for i in onnx.load(str(onnx_path)).graph.initializer}
    model = build(meta.arch, meta.arch_args).eval()
    sd = model.state_dict()
    for name in [k for k in w if k.startswith("features.") and k.endswith(".weight")]:
        bn = f"features.{int(name.split('.')[1]) + 1}"
        sd[name] = torch.from_numpy(w[name])
        sd[bn + ".weight"] = torch.ones_like(sd[bn + ".weight"])
        sd[bn + ".bias"] = torch.from_numpy(w[name + "_bias"])
        sd[bn + ".running_mean"] = torch.zeros_like(sd[bn + ".running_mean"])
        sd[bn + ".running_var"] = torch.full_like(sd[bn + ".running_var"], 1 - model.features[1].eps)
    sd["head.weight"], sd["head.bias"] = torch.from_numpy(w["head.weight"]), torch.from_numpy(w["head.bias"])
    model.load_state_dict(sd)
    checkpoint.save(out, {"state_dict": model.state_dict(), "metadata": meta.to_dict()})


@pytest.fixture(scope="module")
def arm64_models(tmp_path_factory) -> Path:
    """model.pth of the shipped trained model, and its ONNX and LiteRT files, fp32 and int8.

    The exporters are called directly (calibrated on 500 real training images): `export` would also
    verify each file on the whole test set, which is not what this test is about.
    """
    if not REAL_DATA or not Path(REAL_DATA).is_dir():
        pytest.skip("real-MNIST test: set MNIST_EDGE_DATA to a folder holding the MNIST IDX files")
    why = userland.problem()
    if why:
        pytest.skip(why)
    pytest.importorskip("onnx", reason="making the test models needs the train extra")
    pytest.importorskip("litert_torch", reason="making the LiteRT models needs the litert-export extra")
    import shutil

    from mnist_edge.core import data
    from mnist_edge.core.formats import FORMATS, resolve
    from mnist_edge.core.settings import ExportSettings
    from mnist_edge.pytorch.checkpoint import load_model
    from mnist_edge.pytorch.exporters.job import ExportJob

    art = tmp_path_factory.mktemp("arm64")
    _checkpoint_from_onnx(SHIPPED, art / "model.pth")
    shutil.copyfile(SHIPPED, art / "model.onnx")
    model, meta = load_model(art / "model.pth")
    train = data.load_dataset(REAL_DATA, "mnist")[0].images
    calibration = meta.normalize(train[np.random.default_rng(0).choice(len(train), 500, replace=False)])
    job = ExportJob(model, meta, ExportSettings(out=art), calibration, {"onnx": art / "model.onnx"})
    for name in ("onnx-int8", "tflite", "tflite-int8"):
        fmt = FORMATS[name]
        resolve(fmt.exporter)(job, fmt, art / fmt.filename)
    return art


@needs_real_data
@pytest.mark.slow
def test_arm64_formats_on_an_emulated_cortex_a76(arm64_models):
    from mnist_edge.core.data import Split, load_test_split
    from mnist_edge.core.formats import load_checkpoint
    from mnist_edge.verify.arm64 import check_cores
    from mnist_edge.verify.parity import reference

    test = load_test_split(REAL_DATA)
    ref = reference(load_checkpoint(arm64_models / "model.pth"), Split(test.images[:200], test.labels[:200], "test"))
    rows, skipped = check_cores(ref, arm64_models, ["cortex-a76"])
    for r in rows:
        print(f"\nMEASURED {r.format}, 200 test images: max |dlogit| vs PyTorch {r.max_abs_diff:.2e}, "
              f"top-1 {100 * r.top1_agreement:.2f}%, against {r.against}, {1e3 * r.per_image_s:.1f} ms/image emulated")
    assert skipped == []
    by_name = {r.format: r for r in rows}
    assert set(by_name) == {f"{f} @ cortex-a76" for f in ("onnx", "onnx-int8", "tflite", "tflite-int8")}
    assert all(r.passed and r.images == 200 and r.cpu == "cortex-a76" for r in rows), [r.failures for r in rows]
    for name in ("onnx", "tflite"):
        assert by_name[f"{name} @ cortex-a76"].max_abs_diff <= 1e-4
        assert by_name[f"{name} @ cortex-a76"].top1_agreement == 1.0
    assert by_name["onnx-int8 @ cortex-a76"].against["format"] == "integer reference of model.int8.onnx"
    assert by_name["tflite-int8 @ cortex-a76"].against["format"] == "host tflite-int8"
    for name in ("onnx-int8", "tflite-int8"):  # the same integers as every other CPU
        assert by_name[f"{name} @ cortex-a76"].against["max_abs_diff"] == 0.0
    assert all(r.features == ["asimd", "asimddp"] for r in rows)  # QEMU's A76: NEON and dotprod


def test_a_corrupt_model_is_one_line_from_the_emulator(tmp_path):
    why = userland.problem()
    if why:
        pytest.skip(why)
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(emulator.EmulationError) as e:
        emulator.run(bad, np.zeros((1, 1, 28, 28), np.float32), "cortex-a72")
    assert str(e.value).startswith(f"{bad}: failed on emulated cortex-a72 ({bad}: corrupt or not an ONNX model")
