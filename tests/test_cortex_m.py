"""The C model on emulated Cortex-M boards (QEMU): bit-identical with its host build, counted in instructions.

Needs arm-none-eabi-gcc, newlib and qemu-system-arm (`make toolchains`); skips naming the package otherwise.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mnist_edge.core.data import Split
from mnist_edge.core.errors import MissingExtraError
from mnist_edge.core.formats import FORMATS
from mnist_edge.edge.runtimes import c as runtime_c
from mnist_edge.edge.runtimes import c_footprint, cortex_m

from .conftest import make_int8, needs_real_data

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
exporter_c = pytest.importorskip("mnist_edge.pytorch.exporters.c")

PROBLEM = cortex_m.toolchain_problem()
needs_toolchain = pytest.mark.skipif(PROBLEM is not None, reason=f"Cortex-M toolchain: {PROBLEM}")
DEVICE_ROWS = [f for f in FORMATS.values() if f.device]
# the default model's budget on the Cortex-M4 (issue 26): instructions per inference, flash and RAM bytes
BUDGET = {"instructions": 10_000_000, "flash_bytes": 112 * 1024, "ram_bytes": 12 * 1024}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _c_folder(onnx_path: Path, out: Path) -> Path:
    out.mkdir(parents=True)
    exporter_c.export(SimpleNamespace(sources={"onnx-int8": onnx_path}), FORMATS["c-int8"], out)
    return out


@pytest.fixture(scope="module")
def tiny_c(tmp_path_factory) -> Path:
    """A small random-weight edgenet as a C folder."""
    root = tmp_path_factory.mktemp("tiny")
    return _c_folder(make_int8("edgenet", root, {"channels": [4, 8, 16]}, seed=3, calib=16), root / "c")


def _inputs(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(0.0, 1.5, (n, 1, 28, 28)).astype(np.float32)
    x[0] = 0.0
    x[1] = 100.0 * np.where(np.indices((28, 28)).sum(0) % 2 == 0, 1, -1)  # far out of range: clamps
    return x


@needs_toolchain
@pytest.mark.parametrize("core", list(cortex_m.BOARDS))
def test_every_board_is_bit_identical_with_the_host_build(tiny_c, core):
    x = _inputs(40, seed=1)
    want = runtime_c.load(tiny_c, None).run(x)
    rt = cortex_m.load(tiny_c, SimpleNamespace(name=f"c-int8@{core}", device=core))
    got = rt.run(x)
    assert got.dtype == np.float32 and np.array_equal(got, want), f"max |Δ| {np.abs(got - want).max()}"
    assert rt.last_instructions.shape == (40,) and rt.last_instructions.min() > 10_000


@needs_toolchain
@pytest.mark.parametrize("core", ["cortex-m0", "cortex-m3", "cortex-m4"])  # Thumb-1, portable and SMLAD paths
def test_odd_channel_counts_on_the_device(tmp_path, core):
    c = _c_folder(make_int8("edgenet", tmp_path / "odd", {"channels": [3, 5, 7]}, seed=7, calib=16), tmp_path / "c")
    x = _inputs(12, seed=2)
    got = cortex_m.load(c, SimpleNamespace(name="odd", device=core)).run(x)
    assert np.array_equal(got, runtime_c.load(c, None).run(x))


@needs_toolchain
@pytest.mark.parametrize("arch", ["conv2pool-fc2", "conv3pool-fc3"])
def test_other_architectures_on_the_cortex_m4(tmp_path, arch):
    """Reshape and several Gemms, 5x5 kernels with padding 1, odd feature-map sizes, 400 KB of weights."""
    c = _c_folder(make_int8(arch, tmp_path / "m", seed=5, calib=16), tmp_path / "c")
    x = _inputs(6, seed=3)
    got = cortex_m.load(c, FORMATS["c-int8@cortex-m4"]).run(x)
    assert np.array_equal(got, runtime_c.load(c, None).run(x))


# mcu-16k's budget (issue 27): as generated C, 16 KB of flash and 4 KB of RAM for the model (weights, scales,
# code, the C library routines it calls, static buffers and its stack) on a Cortex-M0, and at most 1 M
# instructions per inference on the Cortex-M4. Counts and bytes depend on the layer shapes, not on the weights.
MCU_BUDGET = {"flash_bytes": 16 * 1024, "ram_bytes": 4 * 1024, "m4_instructions": 1_000_000}


@pytest.fixture(scope="module")
def mcu_c(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mcu")
    return _c_folder(make_int8("mcu-16k", root, seed=11, calib=16), root / "c")


@needs_toolchain
@pytest.mark.parametrize("core", ["cortex-m0", "cortex-m4"])
def test_mcu_16k_fits_16_kb_of_flash_and_4_kb_of_ram_bit_exact(mcu_c, core):
    x = _inputs(6, seed=6)
    rt = cortex_m.load(mcu_c, SimpleNamespace(name=f"mcu@{core}", device=core))
    assert np.array_equal(rt.run(x), runtime_c.load(mcu_c, None).run(x))
    fp = rt.footprint()
    assert fp["model_flash_bytes"] <= MCU_BUDGET["flash_bytes"], fp
    assert 0 < fp["model_stack_bytes"] and fp["model_ram_bytes"] <= MCU_BUDGET["ram_bytes"], fp
    # the model's part is inside the whole firmware's, which also holds the runner's I/O and timing
    assert fp["model_flash_bytes"] < fp["flash_bytes"] and fp["model_static_ram_bytes"] <= fp["ram_bytes"]
    if core == "cortex-m4":
        assert rt.last_instructions.max() <= MCU_BUDGET["m4_instructions"]


@needs_toolchain
@pytest.mark.parametrize(("core", "per_tick"), [("cortex-m4", 40.0), ("cortex-m0", 62.5)])
def test_instruction_counts_are_deterministic(tiny_c, core, per_tick):
    b = cortex_m.board(core)
    elf = cortex_m.build_firmware(tiny_c, b)
    x = _inputs(3, seed=4)[[2, 2, 0]]  # the same image twice
    first, second = cortex_m.run_firmware(elf, b, x), cortex_m.run_firmware(elf, b, x)
    # the loop of known length (8,000,000 instructions) finds SysTick's clock: 25 MHz on the MPS2 boards
    # (40 instructions a tick), 16 MHz on the micro:bit (62.5)
    assert first.instructions_per_tick == per_tick
    assert np.array_equal(first.ticks, second.ticks) and np.array_equal(first.marks, second.marks)
    # the same image twice in one run: the same instructions, read in whole ticks that start at another
    # phase of SysTick's clock (40 or 62.5 instructions a tick), so within one tick
    assert abs(first.ticks[0] - first.ticks[1]) <= 1
    assert (first.stack_used, first.model_stack_used) == (second.stack_used, second.model_stack_used)
    # the marks rise through the layers and end inside the call
    assert np.all(np.diff(first.marks[0]) > 0) and first.marks[0, -1] < first.ticks[0]


@needs_toolchain
def test_profile_names_every_layer_and_sizes_the_firmware(tiny_c):
    rt = cortex_m.load(tiny_c, FORMATS["c-int8@cortex-m4"])
    p = rt.profile(_inputs(4, seed=5))
    names = [layer["name"] for layer in p["layers"]]
    assert names == ["quantize input", "conv 5x5 1->4 + maxpool 2x2", "conv 3x3 4->8 + maxpool 2x2",
                     "conv 3x3 8->16", "global mean", "fc 16->10", "dequantize, top-1"]
    layers = sum(layer["instructions"] for layer in p["layers"])
    assert abs(layers - p["instructions_mean"]) < 1e-6 * p["instructions_mean"]
    assert p["instructions_min"] <= p["instructions_mean"] <= p["instructions_max"]
    s = p["sections"]
    assert p["flash_bytes"] == s[".text"] + s.get(".ARM.exidx", 0) + s.get(".data", 0)
    assert p["ram_bytes"] == s.get(".data", 0) + s[".bss"] + s[".stack"] and p["runner_io_bytes"] >= 784 * 4
    assert s[".stack"] == p["stack_bytes"] == cortex_m.BOARDS["cortex-m4"].stack_bytes
    assert 0 < p["model_stack_bytes"] < p["stack_used_bytes"] < p["stack_bytes"]


@needs_toolchain
@pytest.mark.parametrize("core", list(cortex_m.BOARDS))
def test_the_painted_stack_is_measured_and_fits_the_reserve(tiny_c, core):
    rt = cortex_m.load(tiny_c, SimpleNamespace(name=f"c-int8@{core}", device=core))
    assert rt.footprint().get("stack_used_bytes") is None  # nothing measured before a run
    run = cortex_m.run_firmware(rt.firmware, rt.board, _inputs(2, seed=6))
    assert run.stack_reserved == rt.board.stack_bytes == cortex_m.sections(rt.firmware)[".stack"]
    # the model's frames (a few hundred bytes) lie below the runner's main, and the whole fits the reserve
    # with the 25% margin the board's stack_bytes states
    assert 64 < run.model_stack_used < run.stack_used and run.stack_used * 1.25 <= run.stack_reserved + 64
    rt.run(_inputs(2, seed=6))
    assert rt.footprint()["stack_used_bytes"] == run.stack_used


@needs_toolchain
@pytest.mark.parametrize(("core", "why"), [("cortex-m4", "status 6 .the stack reached the last 64 bytes"),
                                           ("cortex-m0", "lockup")])
def test_a_stack_too_small_fails_instead_of_giving_results(tiny_c, core, why):
    """The runner rejects a run whose stack reached the reserve's last 64 bytes; one that ran past the start of
    RAM faults with no stack to take the fault on, which QEMU's Cortex-M0 stops as a lockup."""
    small = dataclasses.replace(cortex_m.board(core), stack_bytes=128)
    with pytest.raises(cortex_m.DeviceRunError, match=why):
        cortex_m.run_firmware(cortex_m.build_firmware(tiny_c, small), small, _inputs(2), timeout_s=60)


@needs_toolchain
@pytest.mark.parametrize(("core", "flags"), [
    ("cortex-m4", c_footprint.M4_FLAGS),
    ("cortex-m0", ("-mcpu=cortex-m0", "-mfloat-abi=soft", "-mthumb", "-O2", "-std=c99"))])
def test_the_static_stack_agrees_with_the_painted_one(tiny_c, core, flags):
    """GCC's call graph gives the model's deepest chain of frames; the soft-float calls (libgcc) have none
    there, and are not on the deepest chain: the painted measure of the firmware is within 16 bytes."""
    static = c_footprint.cross_size(tiny_c / exporter_c.C_FILE, flags, core)
    painted = cortex_m.run_firmware(*_elf_and_board(tiny_c, core), _inputs(2)).model_stack_used
    assert abs(painted - static["stack_bytes"]) <= 16, (painted, static["stack_bytes"])
    soft = {"__aeabi_fmul", "__aeabi_fadd", "__aeabi_i2f"}
    assert soft <= set(static["stack_unsized_calls"]) if core == "cortex-m0" else not static["stack_unsized_calls"]


def _elf_and_board(c_dir: Path, core: str):
    b = cortex_m.board(core)
    return cortex_m.build_firmware(c_dir, b), b


@needs_toolchain
def test_check_holds_the_devices_to_the_host_build(tiny_c, tmp_path, monkeypatch):
    from mnist_edge.verify.parity import check_folder, reference, table

    art = tmp_path / "art"
    shutil.copytree(tiny_c, art / "c")
    host = runtime_c.load(art / "c", None)
    pixels = np.random.default_rng(6).integers(0, 256, (24, 28, 28), dtype=np.uint8)
    ref = reference(host, Split(pixels, np.arange(24, dtype=np.uint8) % 10, "random pixels"))
    report = check_folder(ref, art)
    by = {r.format: r for r in report.results}
    assert set(by) == {"c-int8", *(f.name for f in DEVICE_ROWS)} and report.passed
    for f in DEVICE_ROWS:
        assert by[f.name].against == {"format": "c-int8", "max_abs_diff": 0.0, "top1_agreement": 1.0}
    assert [r.format for r in check_folder(ref, art, devices=False).results] == ["c-int8"]
    # without QEMU the device rows are skipped, naming the package, and check still passes
    real_which = shutil.which
    monkeypatch.setattr(cortex_m.shutil, "which", lambda cmd: None if cmd == cortex_m.QEMU else real_which(cmd))
    report = check_folder(ref, art)
    skipped = [r for r in report.results if r.skipped]
    assert len(skipped) == len(DEVICE_ROWS) and report.passed
    assert all("qemu-system-arm" in r.skipped and "\n" not in r.skipped for r in skipped)
    assert "skipped: qemu-system-arm not found" in table(report.results, ref.accuracy)


def test_missing_tools_are_one_line_naming_the_package(tiny_c, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    why = cortex_m.toolchain_problem()
    assert why is not None and "gcc-arm-none-eabi" in why and "\n" not in why
    with pytest.raises(MissingExtraError) as e:
        cortex_m.load(tiny_c, FORMATS["c-int8@cortex-m4"])
    assert "gcc-arm-none-eabi" in str(e.value) and "\n" not in str(e.value)


@needs_toolchain
@pytest.mark.parametrize("cpu", [("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"),
                                 ("-mcpu=cortex-m0",), ("-mcpu=cortex-m55", "-mfloat-abi=hard")])
@pytest.mark.parametrize("opt", ["-O0", "-O2", "-Os"])
def test_generated_model_is_warning_free_for_cortex_m(tiny_c, tmp_path, cpu, opt):
    res = subprocess.run([cortex_m.CC, *cpu, "-mthumb", opt, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic",
                          "-c", str(tiny_c / exporter_c.C_FILE), "-o", str(tmp_path / "m.o")],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr


@needs_toolchain
@pytest.mark.parametrize("cc", ["gcc", cortex_m.CC])
def test_each_kernel_file_compiles_on_its_own(tmp_path, cc):
    if not shutil.which(cc):
        pytest.skip(f"no {cc}")
    cpu = ["-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-mthumb"] if cc == cortex_m.CC else []
    for src in sorted(runtime_c.KERNEL_DIR.glob("*.c")):
        res = subprocess.run([cc, *cpu, "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic",
                              "-Wno-unused-function", "-c", str(src), "-o", str(tmp_path / "k.o")],
                             capture_output=True, text=True, check=False)
        assert res.returncode == 0, f"{src.name}: {res.stderr}"


# --- the default model (real MNIST) ---------------------------------------------------------------

@pytest.fixture(scope="module")
def default_c(tmp_path_factory) -> Path:
    """The shipped default model, quantized with the default recipe on real training images, as C."""
    from mnist_edge.core.data import load_split
    from mnist_edge.core.settings import DEFAULT_INT8_RECIPE
    from mnist_edge.edge.predict import shipped_model_path
    from mnist_edge.edge.runtimes.onnx import load as load_onnx
    from mnist_edge.pytorch.exporters import onnx_int8

    root = tmp_path_factory.mktemp("default")
    src = shipped_model_path()
    meta = load_onnx(src, FORMATS["onnx"]).metadata
    train = load_split(Path(os.environ["MNIST_EDGE_DATA"]), "train")
    calib = meta.normalize(train.images[:DEFAULT_INT8_RECIPE.calibration_images])
    onnx_int8.write(src, root / "model.int8.onnx", calib, DEFAULT_INT8_RECIPE, meta)
    return _c_folder(root / "model.int8.onnx", root / "c")


@needs_real_data
@needs_toolchain
@pytest.mark.slow
def test_default_model_on_every_board_bit_identical_on_300_test_images(default_c):
    from mnist_edge.core.data import load_split

    test = load_split(Path(os.environ["MNIST_EDGE_DATA"]), "test")
    host = runtime_c.load(default_c, None)
    x = host.metadata.normalize(test.images[:300])
    want = host.run(x)
    assert (want.argmax(1) == test.labels[:300]).mean() > 0.97
    for f in DEVICE_ROWS:
        got = f.load(default_c).run(x)
        assert np.array_equal(got, want), f"{f.name}: max |Δ| {np.abs(got - want).max()}"


@needs_real_data
@needs_toolchain
@pytest.mark.slow
def test_default_model_fits_the_cortex_m4_budget(default_c):
    from mnist_edge.core.data import load_split

    rt = FORMATS["c-int8@cortex-m4"].load(default_c)
    p = rt.profile(rt.metadata.normalize(load_split(Path(os.environ["MNIST_EDGE_DATA"]), "test").images[:20]))
    assert p["instructions_max"] <= BUDGET["instructions"], p["layers"]
    assert p["flash_bytes"] <= BUDGET["flash_bytes"] and p["ram_bytes"] <= BUDGET["ram_bytes"], p["sections"]


@needs_toolchain
def test_bench_device_rows_count_instructions_and_estimate_ms(tiny_c, tmp_path):
    from mnist_edge.verify.bench.devices import markdown, measure_devices

    todo = [(FORMATS["c-int8@cortex-m4"], tiny_c), (FORMATS["c-int8@cortex-m7"], tiny_c)]
    rows = measure_devices(todo, _inputs(3, seed=8), clock_mhz=100.0)
    m4 = rows[0]
    assert m4["board"] == "mps2-an386" and m4["images"] == 3
    assert m4["ms_estimate"] == pytest.approx(m4["instructions_mean"] / 100e3)  # 100 M instructions a second
    text = "\n".join(markdown(rows, 100.0))
    assert "Emulated Cortex-M" in text and "estimate" in text and "| c-int8@cortex-m7 | mps2-an500 |" in text
    assert f"B used of {cortex_m.BOARDS['cortex-m7'].stack_bytes} B reserved |" in text
    assert 0 < m4["stack_used_bytes"] < m4["stack_bytes"]
    assert "| conv 3x3 8->16 |" in text


@needs_toolchain
def test_the_example_firmware_builds_and_runs_in_qemu(tmp_path):
    if not shutil.which("make"):
        pytest.skip("the example's Makefile needs make")
    onnx_path = make_int8("edgenet", tmp_path / "m", {"channels": [4, 8, 16]}, seed=3, calib=16)
    pixels = np.random.default_rng(9).integers(0, 256, (8, 28, 28), dtype=np.uint8)
    meta = runtime_c.read_metadata(_c_folder(onnx_path, tmp_path / "probe"))
    out = tmp_path / "c"
    out.mkdir()
    exporter_c.export(SimpleNamespace(sources={"onnx-int8": onnx_path}, calibration=meta.normalize(pixels)),
                      FORMATS["c-int8"], out)
    example = out / exporter_c.EXAMPLE_DIR
    assert {"main.c", "startup.c", "cortex_m.ld", "Makefile", "README.md", "digits.h"} <= {p.name for p in
                                                                                          example.iterdir()}
    assert "Linker memory" in (example / "README.md").read_text() and "UART" in (example / "README.md").read_text()
    res = subprocess.run(["make", "-s", "run"], cwd=example, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("image ")]  # QEMU: stderr
    # the digits are the calibration images' pixels; the firmware agrees with ONNX Runtime on each
    want = runtime_c.load(out, None).run(meta.normalize(pixels[:exporter_c.EXAMPLE_DIGITS])).argmax(1)
    assert lines == [f"image {i}: {meta.class_names[k]} (as expected)" for i, k in enumerate(want)]
