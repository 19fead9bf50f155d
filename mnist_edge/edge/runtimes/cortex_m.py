"""The C model on an emulated Cortex-M: cross-compiled into a firmware, run in QEMU, timed in instructions.

Torch-free. The generated C folder is compiled with arm-none-eabi-gcc for a named board together with the
firmware files in mnist_edge/edge/cortex_m/ (startup, linker script, semihosting, runner.c); QEMU runs it
with semihosting (the firmware reads the images from a host file and writes logits back) and with
`-icount shift=0`, under which one instruction takes one nanosecond of virtual time, so the core's
SysTick counts instructions: per inference and, through the model's MNIST_EDGE_MARK hook, per layer.
The same count on every run and every host. Flash and RAM come from the linked firmware's sections; the
stack a run used from the runner's painted stack (see runner.c), also the same on every run.

A missing tool is one line naming its Debian package; `make toolchains` installs them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from mnist_edge.core.errors import MissingExtraError, MnistEdgeError, ModelFileError
from mnist_edge.core.metadata import ModelMetadata
from mnist_edge.edge.runtimes.c import C_FILE, H_FILE, _parse_metadata, cache_dir, read_source

FIRMWARE_DIR = Path(__file__).resolve().parents[1] / "cortex_m"  # startup, linker script, runner (package data)
CC, SIZE, QEMU = "arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm"
PACKAGES = {CC: "gcc-arm-none-eabi", "newlib": "libnewlib-arm-none-eabi", QEMU: "qemu-system-arm"}
# -O2: on the default model -O3 runs 6% fewer instructions (7.92 M on the Cortex-M4) for 5 KB more flash
# (114.9 KB, over the 112 KB a 128 KB part leaves for the firmware); -Os runs 18% more (9.98 M)
COMMON_FLAGS = ("-mthumb", "-O2", "-std=c99", "-Wall", "-Wextra", "-ffunction-sections", "-fdata-sections")
IMAGES_PER_RUN = 1000  # one emulator run: 13-14 s of CPU for the default model on a Cortex-M4
_HEADER_WORDS, _TRAILER_WORDS, _MAGIC = 6, 3, 0x4D43454D
_MARK_RE = re.compile(r"MNIST_EDGE_MARK\((\d+)\);\s*/\* (.*?) \*/")
_BUILD_LOCK = threading.Lock()


@dataclass(frozen=True)
class Board:
    """A QEMU board, the compiler flags of its core and the stack its firmware reserves."""

    core: str  # what a format row names, e.g. "cortex-m4"
    machine: str  # qemu-system-arm -M ...
    flags: tuple[str, ...]
    note: str
    # bytes of RAM reserved for the stack (cortex_m.ld's STACK_SIZE): the deepest the runner's stack went
    # (painted, measured) on the models of tests/test_cortex_m.py and the default model, plus 25%, rounded
    # up to 64 bytes. The deepest chain (model -> conv2d -> gather_patch) is the kernels', whatever the sizes.
    stack_bytes: int = 640

    @property
    def link_flags(self) -> tuple[str, ...]:
        return (*self.flags, f"-Wl,--defsym=STACK_SIZE={self.stack_bytes}")


BOARDS = {b.core: b for b in (
    # measured stack: 548 B (the default model; 428 B of it the model's), 685 B with 25%
    Board("cortex-m0", "microbit", ("-mcpu=cortex-m0", "-mfloat-abi=soft",
                                    "-Wl,--defsym=FLASH_SIZE=256K,--defsym=RAM_SIZE=16K"),
          "BBC micro:bit (nRF51822): Armv6-M (Thumb-1), no DSP, no FPU (float in software)", 704),
    # measured stack: 504 B on the Cortex-M3, 496 B on the M4, 488 B on the M7, 476 B on the M55: 630 B with 25%
    Board("cortex-m3", "mps2-an385", ("-mcpu=cortex-m3", "-mfloat-abi=soft"),
          "MPS2 AN385: no DSP extension, no FPU (the portable C path, float in software)"),
    Board("cortex-m4", "mps2-an386", ("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"),
          "MPS2 AN386: DSP extension (SMLAD), single-precision FPU"),
    Board("cortex-m7", "mps2-an500", ("-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard"),
          "MPS2 AN500: DSP extension, double-precision FPU"),
    Board("cortex-m55", "mps3-an547", ("-mcpu=cortex-m55", "-mfloat-abi=hard",
                                       "-Wl,--defsym=FLASH_SIZE=512K,--defsym=RAM_SIZE=512K"),
          "MPS3 AN547: DSP extension, FPU and Helium (MVE; the kernels use its DSP instructions)"),
)}


class DeviceRunError(MnistEdgeError):
    """The firmware did not run to its end in the emulator."""


@cache
def _has_newlib() -> bool:
    out = subprocess.run([CC, "-print-file-name=libc.a"], capture_output=True, text=True, check=False).stdout.strip()
    return os.path.isabs(out) and os.path.isfile(out)


def toolchain_problem() -> str | None:
    """One line on the tool this machine lacks for the Cortex-M runs (with its Debian package), or None."""
    for tool in (CC, SIZE, QEMU):
        if not shutil.which(tool):
            package = PACKAGES.get(tool, PACKAGES[CC])
            return f"{tool} not found: install the Debian package {package} (`make toolchains`)"
    if not _has_newlib():
        return f"the C library for {CC} is missing: install the Debian package {PACKAGES['newlib']}"
    return None


def _need_toolchain() -> None:
    why = toolchain_problem()
    if why:
        raise MissingExtraError(f"the Cortex-M runs need their toolchain: {why}")


@cache
def _machines() -> frozenset[str]:
    out = subprocess.run([QEMU, "-machine", "help"], capture_output=True, text=True, check=False).stdout
    return frozenset(line.split()[0] for line in out.splitlines()[1:] if line.strip())


@cache
def _version(cmd: str) -> str:
    out = subprocess.run([cmd, "--version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0] if out else "unknown"


def board(core: str) -> Board:
    if core not in BOARDS:
        raise MnistEdgeError(f"unknown Cortex-M board {core!r} (one of {', '.join(BOARDS)})")
    b = BOARDS[core]
    _need_toolchain()
    if b.machine not in _machines():
        raise MissingExtraError(f"{QEMU} here has no board {b.machine} for {core} ({_version(QEMU)})")
    return b


def sections(elf: Path) -> dict[str, int]:
    """Section sizes of a linked firmware (arm-none-eabi-size -A)."""
    out = subprocess.run([SIZE, "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = int(parts[1])
    return sizes


def footprint(elf: Path, b: Board) -> dict:
    """Flash and RAM of the linked firmware: flash holds code, constants and .data's initial values; RAM
    is .data, .bss and the reserved stack (the board's stack_bytes; a run measures what it used). The
    runner's own image and result buffers (.io) are apart."""
    s = sections(elf)
    flash = s.get(".text", 0) + s.get(".ARM.exidx", 0) + s.get(".data", 0)
    ram = s.get(".data", 0) + s.get(".bss", 0) + s.get(".stack", 0)
    return {"target": b.core, "board": b.machine, "flags": " ".join((*b.link_flags, *COMMON_FLAGS)),
            "compiler": _version(CC), "flash_bytes": flash, "ram_bytes": ram, "stack_bytes": s.get(".stack", 0),
            "runner_io_bytes": s.get(".io", 0), "sections": s}


def compiler_version() -> str:
    return _version(CC)


def model_footprint(c_dir: Path, b: Board, model_stack: int | None = None) -> dict:
    """What the model itself takes on board `b`, without the runner's I/O and timing: the flash and static RAM
    of the smallest firmware around it (bare.c: startup, vector table, one call), and with the model's
    measured stack (`model_stack`, from a run), its RAM."""
    s = sections(build_firmware(Path(c_dir), b, main="bare.c"))
    static = s.get(".data", 0) + s.get(".bss", 0)
    out = {"model_flash_bytes": s.get(".text", 0) + s.get(".ARM.exidx", 0) + s.get(".data", 0),
           "model_static_ram_bytes": static}
    if model_stack:
        out["model_ram_bytes"] = static + model_stack
    return out


def build_firmware(c_dir: Path, b: Board, main: str = "runner.c", extra: tuple[str, ...] = ()) -> Path:
    """The firmware of a generated C model for board `b` (cached by the SHA-256 of everything it is made of)."""
    c_path, _, c_text, h_text = read_source(Path(c_dir))
    parts = [FIRMWARE_DIR / "startup.c", FIRMWARE_DIR / main]
    firmware_text = [p.read_text("utf-8") for p in (*parts, FIRMWARE_DIR / "cortex_m.ld", FIRMWARE_DIR / "semihost.h")]
    hook = ("-DMNIST_EDGE_MARK_HOOK=mnist_edge_mark",) if main == "runner.c" else ()  # bare.c has no marks
    flags = [*b.link_flags, *COMMON_FLAGS, *hook, *extra]
    key = hashlib.sha256("\0".join([c_text, h_text, *firmware_text, _version(CC), *flags]).encode()).hexdigest()
    out_dir = cache_dir() / "cortex-m"
    out_dir.mkdir(parents=True, exist_ok=True)
    elf = out_dir / f"{b.core}-{key[:32]}.elf"
    if elf.is_file():
        return elf
    with _BUILD_LOCK, tempfile.TemporaryDirectory(prefix="mnist-edge-fw-") as work:
        if elf.is_file():
            return elf
        (Path(work) / C_FILE).write_text(c_text, "utf-8")  # the real names: the original may be a temporary
        (Path(work) / H_FILE).write_text(h_text, "utf-8")
        tmp = Path(work) / "firmware.elf"
        cmd = [CC, *flags, "-I", work, "-I", str(FIRMWARE_DIR), "-nostartfiles",
               "-T", str(FIRMWARE_DIR / "cortex_m.ld"), "-Wl,--gc-sections", *map(str, parts), str(Path(work) / C_FILE),
               "-Wl,--start-group", "-lc", "-lgcc", "-Wl,--end-group", "-o", str(tmp)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
        if res.returncode != 0:
            over = [ln.split(": ")[-1] for ln in res.stderr.splitlines() if "overflowed by" in ln]
            if over:  # the linker's own words: "region `FLASH' overflowed by 174000 bytes"
                raise ModelFileError(f"{c_path}: does not fit the memory of {b.core} ({b.machine}): {'; '.join(over)}")
            err = next((ln for ln in res.stderr.splitlines() if "error" in ln), res.stderr.strip()[:160])
            raise ModelFileError(f"{c_path}: does not build for {b.core} ({err.replace(work + os.sep, '')[:200]})")
        fd, part = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".elf.tmp", dir=out_dir)
        os.close(fd)
        shutil.copyfile(tmp, part)
        os.replace(part, elf)
    return elf


def qemu_command(elf: Path, b: Board) -> list[str]:
    """QEMU with semihosting on, files relative to its working folder, one instruction per nanosecond."""
    return [QEMU, "-M", b.machine, "-nographic", "-monitor", "none", "-serial", "null",
            "-semihosting-config", "enable=on,target=native", "-icount", "shift=0,align=off,sleep=off",
            "-kernel", str(elf)]


@dataclass
class DeviceRun:
    """What one emulator run returned: logits and SysTick readings per image."""

    logits: np.ndarray  # (N, classes) float32
    ticks: np.ndarray  # (N,) the whole call
    marks: np.ndarray  # (N, marks) since the call began, after each layer
    instructions_per_tick: float  # 1 ns per instruction over SysTick's clock (timed on a loop of known length)
    stack_reserved: int = 0  # bytes the linker script reserves for the stack
    stack_used: int = 0  # the deepest the stack went in the run (painted words overwritten), bytes
    model_stack_used: int = 0  # ... below the stack pointer at the model's call: the model's own need


_FIRMWARE_EXITS = {2: "cannot open in.bin or out.bin", 3: "cannot write out.bin", 4: "cannot read in.bin",
                   5: "cannot write out.bin", 6: "the stack reached the last 64 bytes the linker script reserves",
                   127: "a fault (bad memory access, stack overflow)"}


def run_firmware(elf: Path, b: Board, x: np.ndarray, timeout_s: float | None = None) -> DeviceRun:
    """Run `x` (N, ...) float32 through the firmware in one emulator run."""
    x = np.ascontiguousarray(x, dtype="<f4")
    timeout_s = timeout_s or 120.0 + 1.0 * len(x)  # the default model: ~12 ms of CPU an image; a busy host gives less
    with tempfile.TemporaryDirectory(prefix="mnist-edge-qemu-") as work:
        x.tofile(Path(work) / "in.bin")
        try:
            res = subprocess.run(qemu_command(elf, b), cwd=work, capture_output=True, text=True, check=False,
                                 timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise DeviceRunError(f"{b.core}: the emulator did not finish {len(x)} images "
                                 f"in {timeout_s:.0f} s") from None
        if res.returncode != 0:
            last = (res.stderr.strip().splitlines() or ["no message"])[-1][:160]
            lockup = "a fault the core could not take (lockup), as when the stack runs past its end"
            why = _FIRMWARE_EXITS.get(res.returncode) or (lockup if "Lockup" in res.stderr else last)
            raise DeviceRunError(f"{b.core}: the firmware stopped with status {res.returncode} ({why})")
        out = Path(work) / "out.bin"
        if not out.is_file():
            raise DeviceRunError(f"{b.core}: the firmware ended without writing its results")
        data = out.read_bytes()
    head = np.frombuffer(data[:4 * _HEADER_WORDS], "<u4")
    magic, n, calib_ticks, calib_instr, classes, max_marks = (int(v) for v in head)
    record = 4 * classes + 4 + 4 * (max_marks + 1)
    end = 4 * _HEADER_WORDS + n * record
    if magic != _MAGIC or n != len(x) or len(data) != end + 4 * _TRAILER_WORDS or not calib_ticks:
        raise DeviceRunError(f"{b.core}: the firmware's results are incomplete ({len(data)} bytes for {len(x)} images)")
    body = np.frombuffer(data[4 * _HEADER_WORDS:end], np.uint8).reshape(n, record)
    stack_reserved, stack_used, model_stack = (int(v) for v in np.frombuffer(data[end:], "<u4"))
    logits = body[:, :4 * classes].copy().view("<f4").astype(np.float32)
    n_marks = body[:, 4 * classes:4 * classes + 4].copy().view("<u4")[:, 0]
    ticks = body[:, 4 * classes + 4:].copy().view("<u4")
    used = int(n_marks.max()) if n else 0
    # SysTick's clock from the loop of known length, to the nearest kHz: each reading is off by up to a tick,
    # which is 5 ppm of the loop (125 Hz at 25 MHz), so the board's clock comes out exact
    clock_hz = round(calib_ticks * 1e9 / calib_instr, -3)
    return DeviceRun(logits, ticks[:, max_marks].astype(np.int64), ticks[:, :used].astype(np.int64), 1e9 / clock_hz,
                     stack_reserved, stack_used, model_stack)


def layer_names(c_text: str) -> list[str]:
    """The names of the model's profiling marks, from the generated .c (mark 0: the input quantized)."""
    return [name for _, name in sorted((int(i), n) for i, n in _MARK_RE.findall(c_text))]


@dataclass
class CortexMRuntime:
    """A generated C model run on an emulated Cortex-M; run() is the Runtime, profile() the instruction counts."""

    format: str
    path: Path
    metadata: ModelMetadata
    board: Board
    firmware: Path
    layers: list[str]
    last_instructions: np.ndarray | None = field(default=None, repr=False)  # per image, of the last run()
    # the deepest stack use seen in any run so far (firmware, model), bytes; None before the first run
    stack_used: tuple[int, int] | None = field(default=None, repr=False)

    def _runs(self, x: np.ndarray) -> list[DeviceRun]:
        chunks = [x[i:i + IMAGES_PER_RUN] for i in range(0, len(x), IMAGES_PER_RUN)]
        workers = max(1, min(len(chunks), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))
        with ThreadPoolExecutor(workers) as pool:  # the emulators are processes: threads only wait for them
            runs = list(pool.map(lambda c: run_firmware(self.firmware, self.board, c), chunks))
        seen = [(r.stack_used, r.model_stack_used) for r in runs] + ([self.stack_used] if self.stack_used else [])
        self.stack_used = (max(f for f, _ in seen), max(m for _, m in seen))
        return runs

    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, 1, 28, 28), already normalised -> float32 logits (N, num_classes), computed in the emulator."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.metadata.input_shape):
            raise ValueError(f"expected input (N, {', '.join(map(str, self.metadata.input_shape))}), got {x.shape}")
        k = len(self.metadata.class_names)
        if not len(x):
            return np.empty((0, k), np.float32)
        runs = self._runs(x)
        self.last_instructions = np.concatenate([r.ticks * r.instructions_per_tick for r in runs])
        return np.concatenate([r.logits for r in runs])

    def profile(self, x: np.ndarray) -> dict:
        """Instructions per inference (mean, min, max over `x`) and per layer, with the firmware's flash and RAM."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        runs = self._runs(x)
        per = runs[0].instructions_per_tick
        total = np.concatenate([r.ticks for r in runs]) * per
        marks = np.concatenate([r.marks for r in runs]) * per
        bounds = np.concatenate([np.zeros((len(total), 1)), marks, total[:, None]], axis=1)
        steps = np.diff(bounds, axis=1).mean(0)
        names = ["quantize input", *self.layers[1:], "dequantize, top-1"]
        if len(names) != len(steps):
            names = [f"step {i}" for i in range(len(steps))]
        return {"board": self.board.machine, "core": self.board.core, "images": int(len(total)),
                "instructions_mean": float(total.mean()), "instructions_min": float(total.min()),
                "instructions_max": float(total.max()), "instructions_per_tick": per,
                "layers": [{"name": n, "instructions": float(v)} for n, v in zip(names, steps, strict=True)],
                "qemu": _version(QEMU), **self.footprint()}

    def footprint(self) -> dict:
        """Flash and RAM bytes of the linked firmware; after a run, also the stack it used (painted, measured)."""
        out = footprint(self.firmware, self.board)
        if self.stack_used:
            out["stack_used_bytes"], out["model_stack_bytes"] = self.stack_used
        return {**out, **model_footprint(self.path, self.board, out.get("model_stack_bytes"))}


def load(path: Path, fmt, threads: int | None = None) -> CortexMRuntime:
    """Build (or reuse) the firmware of a generated C model for the row's board; `threads` is ignored."""
    b = board(getattr(fmt, "device", None) or "cortex-m4")
    c_path, _, c_text, _ = read_source(Path(path))
    meta = _parse_metadata(c_path, c_text)
    elf = build_firmware(Path(path), b)
    return CortexMRuntime(getattr(fmt, "name", f"c-int8@{b.core}"), Path(path), meta, b, elf, layer_names(c_text))
