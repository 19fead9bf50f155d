"""Run a model file on an emulated ARM core: QEMU user mode and the cached arm64 userland.

The host writes the images to a .npy, starts `qemu-aarch64-static -cpu CORE` on the arm64 Python with
worker.py, which loads the model with the same loader as the host (mnist_edge.core.formats) and writes
the logits to a .npy. One process takes a whole set of images; a large set is split between one
process per host core. No binfmt_misc is needed: QEMU is started directly, with QEMU_LD_PREFIX naming
a per-run root whose /proc/cpuinfo describes the chosen core (onnxruntime's cpuinfo library reads it;
the host's x86 one crashes it) and whose other folders are the cached userland's.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_edge.core.errors import MnistEdgeError
from mnist_edge.edge.arm64 import userland as ul

DEFAULT_CPU = "cortex-a76"  # Raspberry Pi 5; cortex-a72 is the Pi 4, cortex-a53 the Pi 3 and Zero 2
# The loaders whose packages the userland installs, and those packages' import names. Not ExecuTorch:
# its aarch64 wheel exists, but its Python runtime (extension/pybindings/_C) links libtorch, libtorch_cpu,
# libc10 and libtorch_python and imports torch first, so it would need the aarch64 torch wheel too.
RUNTIME_MODULES = {"mnist_edge.edge.runtimes.onnx:load": "onnxruntime",
                   "mnist_edge.edge.runtimes.litert:load": "ai_edge_litert"}

# /proc/cpuinfo of each core QEMU 7.2 knows: MIDR fields (implementer, variant, part, revision) and the
# feature names Linux prints. cpuinfo takes the micro-architecture from the MIDR (ONNX Runtime picks
# Cortex-A53/A55 kernels by it); the features that pick kernels come from QEMU's auxiliary vector.
_BASE = "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"
_V82 = _BASE + " atomics fphp asimdhp asimdrdm lrcpc dcpop asimddp"
CORES: dict[str, tuple[int, int, int, int, str]] = {
    "cortex-a35": (0x41, 0x0, 0xD04, 2, _BASE),
    "cortex-a53": (0x41, 0x0, 0xD03, 4, _BASE),
    "cortex-a57": (0x41, 0x1, 0xD07, 1, _BASE),
    "cortex-a72": (0x41, 0x0, 0xD08, 3, _BASE),
    "cortex-a76": (0x41, 0x4, 0xD0B, 1, _V82),
    "neoverse-n1": (0x41, 0x4, 0xD0C, 1, _V82 + " ssbs"),
    "a64fx": (0x46, 0x1, 0x001, 0, _V82 + " sve"),
    "max": (0x00, 0x0, 0x051, 0, _V82 + " sve"),  # QEMU's own "all features" core: implementer 0, part 'Q'
}
SME_FREE = "sme=off"  # QEMU's `max` core advertises SME, and LiteRT int8 under QEMU 7.2 then gives wrong logits


class EmulationError(MnistEdgeError):
    """The emulated run could not be set up or did not finish (one line: the core, the model, why)."""


class Unavailable(MnistEdgeError):
    """This machine has no QEMU or no arm64 userland: callers skip the ARM64 rows with this line."""


@functools.cache
def qemu_cpus(qemu: str = ul.QEMU) -> tuple[str, ...]:
    """The core names `qemu -cpu help` lists; () when QEMU is not installed."""
    exe = shutil.which(qemu)
    if exe is None:
        return ()
    out = subprocess.run([exe, "-cpu", "help"], capture_output=True, text=True, timeout=30).stdout
    return tuple(line.split()[0] for line in out.splitlines()[1:] if line.strip())


def check_cpu(cpu: str, known: tuple[str, ...] | None = None) -> str:
    """`cpu` if QEMU knows the core (options after a comma, e.g. max,sme=off, pass to QEMU), else one-line error."""
    known = qemu_cpus() if known is None else known
    name, _, opts = cpu.strip().partition(",")
    if not known:
        raise Unavailable(f"{ul.QEMU} not found (Debian: apt-get install qemu-user-static): "
                          f"cannot emulate {cpu!r}")
    if name not in known:
        raise MnistEdgeError(f"unknown ARM core {cpu!r}: {ul.QEMU} knows {', '.join(known)}")
    if name == "max" and SME_FREE not in opts.split(","):
        raise MnistEdgeError(f"core 'max' advertises SME, which QEMU 7.2 emulates wrongly for LiteRT int8: "
                             f"name a core (e.g. {DEFAULT_CPU}) or use 'max,{SME_FREE}'")
    return cpu.strip()


def fake_cpuinfo(cpu: str, processors: int) -> str:
    """An arm64 Linux /proc/cpuinfo for `processors` cores of the named kind (unknown kinds: QEMU's max)."""
    implementer, variant, part, revision, features = CORES.get(cpu.partition(",")[0], CORES["max"])
    block = (f"BogoMIPS\t: 48.00\nFeatures\t: {features}\nCPU implementer\t: 0x{implementer:02x}\n"
             f"CPU architecture: 8\nCPU variant\t: 0x{variant:x}\nCPU part\t: 0x{part:03x}\n"
             f"CPU revision\t: {revision}\n")
    return "".join(f"processor\t: {i}\n{block}\n" for i in range(processors))


def emulable(loader: str, land: ul.Userland | None = None) -> str | None:
    """None if a format with this loader runs in the userland, else one line on why not."""
    module = RUNTIME_MODULES.get(loader)
    if module is None:
        return "its runtime has no aarch64 package in the emulated userland"
    land = land or ul.current()
    if not land.has(module):
        return f"{module} is not installed in the arm64 userland {land.folder} ({ul.SETUP_HINT})"
    return None


# What the per-run root takes from the userland: the host's /dev, /sys, /tmp, /run stay visible to the
# guest (QEMU falls back to the host path when the root lacks one), so models and .npy files anywhere load.
_FROM_USERLAND = ("bin", "etc", "lib", "lib64", "sbin", "usr", "var", "opt")


def _run_root(tmp: Path, land: ul.Userland, cpu: str) -> Path:
    root = tmp / "root"
    (root / "proc").mkdir(parents=True)
    for name in _FROM_USERLAND:
        if (land.root / name).exists() or (land.root / name).is_symlink():
            (root / name).symlink_to(land.root / name)
    (root / "proc" / "cpuinfo").write_text(fake_cpuinfo(cpu, os.cpu_count() or 1))
    return root


def _package_path(tmp: Path) -> Path:
    """A folder holding only this mnist_edge package: the host's site-packages would shadow the arm64 wheels."""
    import mnist_edge

    folder = tmp / "py"
    folder.mkdir()
    (folder / "mnist_edge").symlink_to(Path(mnist_edge.__file__).resolve().parent)
    return folder


@dataclass
class EmulatedRun:
    """Logits of one model on one emulated core, and where the time went (emulated, not device time)."""

    cpu: str
    model: str
    logits: np.ndarray
    batch: int
    wall_s: float  # start to finish: emulator start, imports, model load, every image
    load_s: float  # inside the emulator: imports and model load (the slowest process's)
    run_s: float  # inside the emulator: the images alone, summed over the processes
    run_cpu_s: float  # the same in host CPU time: what a busy host does not inflate
    processes: int = 1  # emulated processes that shared the images, side by side
    features: tuple[str, ...] = ()  # what the emulated core advertises to the runtimes (hwcaps: asimd, asimddp, ...)

    @property
    def per_image_s(self) -> float:
        """Host CPU seconds of emulation per image (one thread): emulator speed, not a device's."""
        return self.run_cpu_s / max(1, len(self.logits))


MIN_CHUNK = 500  # images per emulated process at least: each pays ~3-10 s of start-up and model load


def processes_for(n: int) -> int:
    """How many emulated processes share n images: one per host core this process may use, MIN_CHUNK each."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, n // MIN_CHUNK))


def run(model: str | os.PathLike, x: np.ndarray, cpu: str = DEFAULT_CPU, batch: int = 1, threads: int = 1,
        timeout_s: float | None = None, processes: int | None = None, land: ul.Userland | None = None) -> EmulatedRun:
    """Logits of `model` on normalised images x (N, 1, 28, 28): contiguous slices, one emulated process each."""
    cpu = check_cpu(cpu)
    land = land or ul.current()
    why = ul.problem(land)
    if why:
        raise Unavailable(why)
    model = Path(model).resolve()
    k = processes or processes_for(len(x))
    bounds = np.linspace(0, len(x), k + 1).astype(int)
    with tempfile.TemporaryDirectory(prefix="mnist-edge-arm64-") as t:
        tmp = Path(t)
        root, py = _run_root(tmp, land, cpu), _package_path(tmp)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(k) as pool:  # each thread waits on one QEMU process
            parts = list(pool.map(lambda i: _one(model, x[bounds[i]:bounds[i + 1]], cpu, batch, threads, timeout_s,
                                                 land, root, py, tmp / f"part{i}"), range(k)))
        wall = time.perf_counter() - t0
    logits = np.concatenate([p[0] for p in parts])
    timings = [p[1] for p in parts]
    return EmulatedRun(cpu, str(model), logits, batch, wall, max(t["load_s"] for t in timings),
                       sum(t["run_s"] for t in timings), sum(t["run_cpu_s"] for t in timings), k,
                       tuple(timings[0]["features"]))


def _one(model: Path, x: np.ndarray, cpu: str, batch: int, threads: int, timeout_s: float | None,
         land: ul.Userland, root: Path, py: Path, tmp: Path) -> tuple[np.ndarray, dict]:
    """One emulated process on one slice: (logits, its timings)."""
    tmp.mkdir()
    np.save(tmp / "x.npy", np.ascontiguousarray(x, dtype=np.float32))
    env = {"QEMU_LD_PREFIX": str(root), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
           "PYTHONPATH": f"{py}:{land.site}", "PYTHONNOUSERSITE": "1", "HOME": str(tmp)}
    cmd = [shutil.which(ul.QEMU) or ul.QEMU, "-cpu", cpu, str(land.python), "-m", "mnist_edge.edge.arm64.worker",
           str(model), str(tmp / "x.npy"), str(tmp / "logits.npy"), str(batch), str(threads)]
    try:
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise EmulationError(f"{model}: no result on emulated {cpu} within {timeout_s:.0f} s") from None
    if res.returncode != 0 or not (tmp / "logits.npy").is_file():
        detail = (res.stderr.strip().splitlines() or [f"exit status {res.returncode}"])[-1]
        raise EmulationError(f"{model}: failed on emulated {cpu} ({detail[:200]})")
    return np.load(tmp / "logits.npy"), json.loads(res.stdout.strip().splitlines()[-1])
