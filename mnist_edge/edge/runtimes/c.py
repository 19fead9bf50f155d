"""The C model runtime: compile the generated C99 once with the host compiler, call it through ctypes.

Torch-free and onnx-free. The shared library is cached by the SHA-256 of the sources, compiler and flags,
so a model compiles once per machine; compiling goes to a temporary name then os.replace, so concurrent
loaders never see a half-written library.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnist_edge.core.errors import MissingExtraError, ModelFileError, first_line
from mnist_edge.core.metadata import ModelMetadata

C_FILE, H_FILE = "mnist_edge_model.c", "mnist_edge_model.h"
C_MARKER = "mnist-edge C model"
ABI_VERSION = 1
# -O3: GCC 12 at -O2 vectorises only loops of known trip count; the conv dot products run 7x faster at -O3.
# Exactness does not depend on it (no -ffast-math; the .c turns floating-point contraction off).
CFLAGS = ("-O3", "-std=c99", "-shared", "-fPIC")
COMPILERS = ("cc", "gcc", "clang")  # tried in this order unless $CC names one
KERNEL_DIR = Path(__file__).resolve().parents[1] / "c"  # the kernels as C files (package data)
KERNELS_H = "mnist_edge_kernels.h"
_METADATA_RE = re.compile(r"/\* mnist-edge-metadata-json:\n(.*?)\n\*/", re.S)
_BUILD_LOCK = threading.Lock()


def kernel_source(name: str) -> str:
    """A kernel file's text without its #include of the shared header (copied once, first, instead)."""
    text = (KERNEL_DIR / name).read_text("utf-8")
    return "".join(ln for ln in text.splitlines(keepends=True) if ln.strip() != f'#include "{KERNELS_H}"')


def find_compiler() -> list[str]:
    """The C compiler command: $CC (may carry a wrapper, e.g. "ccache gcc"), else the first of cc, gcc, clang."""
    wanted = shlex.split(os.environ.get("CC", ""))
    for cmd in ([wanted] if wanted else [[c] for c in COMPILERS]):
        found = shutil.which(cmd[0])
        if found:
            return [found, *cmd[1:]]
    what = f"$CC ({' '.join(wanted)})" if wanted else "cc"
    raise MissingExtraError(f"the C model runtime needs a C compiler: {what} not found (install gcc, or set CC)")


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/mnist-edge/c (default ~/.cache), or a per-user temp folder if that is not writable."""
    try:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnist-edge" / "c"
        root.mkdir(parents=True, exist_ok=True)
        if os.access(root, os.W_OK):
            return root
    except (OSError, RuntimeError):  # RuntimeError: no home directory to be found
        pass
    fallback = Path(tempfile.gettempdir()) / f"mnist-edge-c-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def source_paths(path: Path) -> tuple[Path, Path]:
    """The .c file and its header, from the model folder or the .c file itself."""
    c_path = path / C_FILE if path.is_dir() else path
    return c_path, c_path.parent / H_FILE


def read_source(path: Path) -> tuple[Path, Path, str, str]:
    """(.c path, .h path, .c text, .h text), refusing anything that is not a generated mnist-edge C model."""
    path = Path(path)
    c_path, h_path = source_paths(path)
    if not c_path.is_file():
        raise ModelFileError(f"{c_path}: no such C model file")
    try:
        c_text = c_path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or "not text"
        raise ModelFileError(f"{c_path}: not an mnist-edge C model ({why})") from None
    if C_MARKER not in c_text[:300]:
        raise ModelFileError(f"{c_path}: not an mnist-edge C model (no '{C_MARKER}' header comment)")
    if not h_path.is_file():
        raise ModelFileError(f"{h_path}: missing: the C model needs its header {H_FILE} beside it")
    return c_path, h_path, c_text, h_path.read_text("utf-8", errors="replace")


def read_metadata(path: Path) -> ModelMetadata:
    """The model metadata from the comment block of the .c (no compiler needed)."""
    c_path, _, c_text, _ = read_source(path)
    return _parse_metadata(c_path, c_text)


def _parse_metadata(c_path: Path, c_text: str) -> ModelMetadata:
    m = _METADATA_RE.search(c_text)
    if not m:
        raise ModelFileError(f"{c_path}: not an mnist-edge model (no mnist-edge metadata)")
    return ModelMetadata.from_json(m.group(1), str(c_path))


def compile_library(c_path: Path, c_text: str, h_text: str) -> Path:
    """The cached shared library of this source; compiled (once) if absent."""
    cc = find_compiler()
    key = hashlib.sha256("\0".join([c_text, h_text, os.path.realpath(cc[0]), *cc[1:], *CFLAGS]).encode()).hexdigest()
    out = cache_dir() / f"{key}.so"
    if out.is_file():
        return out
    with _BUILD_LOCK:
        if out.is_file():
            return out
        with tempfile.TemporaryDirectory(prefix="mnist-edge-cc-") as work:
            # compile a copy under the real names: the original may be a temporary like ".x.c.tmp"
            src = Path(work) / C_FILE
            src.write_text(c_text, "utf-8")
            (Path(work) / H_FILE).write_text(h_text, "utf-8")
            fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".so.tmp", dir=out.parent)
            os.close(fd)
            try:
                res = subprocess.run([*cc, *CFLAGS, "-o", tmp, str(src)], capture_output=True, text=True,
                                     timeout=600, check=False)
                if res.returncode != 0:
                    err = next((ln for ln in res.stderr.splitlines() if "error" in ln), res.stderr.strip()[:160])
                    raise ModelFileError(f"{c_path}: does not compile as an mnist-edge C model "
                                         f"({err.replace(work + os.sep, '')[:200]})")
                os.replace(tmp, out)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
    return out


@dataclass
class CRuntime:
    """A compiled C model; run() is serialised because the C code uses static scratch buffers."""

    format: str
    path: Path
    metadata: ModelMetadata
    library: Path
    _lib: object = field(repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, 1, 28, 28), already normalised -> float32 logits (N, num_classes)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        n, k = len(x), len(self.metadata.class_names)
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.metadata.input_shape):
            raise ValueError(f"expected input (N, {', '.join(map(str, self.metadata.input_shape))}), got {x.shape}")
        out = np.empty((n, k), np.float32)
        fptr = ctypes.POINTER(ctypes.c_float)
        with self._lock:
            self._lib.mnist_edge_predict_normalized_batch(x.ctypes.data_as(fptr), n, out.ctypes.data_as(fptr))
        return out

    def footprint(self) -> dict | None:
        """Flash and RAM bytes on a Cortex-M4F (arm-none-eabi-gcc), or None where that compiler is missing."""
        from mnist_edge.edge.runtimes.c_footprint import cross_size

        return cross_size(source_paths(self.path)[0])


def _bind(c_path: Path, so: Path, meta: ModelMetadata) -> ctypes.CDLL:
    """Load the library and check its entry points, ABI version and embedded metadata."""
    try:
        lib = ctypes.CDLL(str(so))
        fn = lib.mnist_edge_predict_normalized_batch
        abi = ctypes.c_int32.in_dll(lib, "mnist_edge_abi_version").value
        classes = ctypes.c_int32.in_dll(lib, "mnist_edge_num_classes").value
        embedded = ctypes.string_at(ctypes.addressof(ctypes.c_char.in_dll(lib, "mnist_edge_metadata_json")))
    except (OSError, AttributeError, ValueError) as e:
        raise ModelFileError(f"{c_path}: not an mnist-edge C model ({first_line(e, 120)})") from None
    if abi != ABI_VERSION:
        raise ModelFileError(f"{c_path}: C model ABI version {abi}, this mnist-edge reads {ABI_VERSION}")
    if classes != len(meta.class_names) or ModelMetadata.from_json(embedded, str(c_path)) != meta:
        raise ModelFileError(f"{c_path}: the metadata comment and mnist_edge_metadata_json disagree (edited file?)")
    fptr = ctypes.POINTER(ctypes.c_float)
    fn.argtypes, fn.restype = [fptr, ctypes.c_int32, fptr], None
    return lib


def load(path: Path, fmt, threads: int | None = None) -> CRuntime:
    """Compile (or reuse) and load a generated C model; `threads` is ignored (the C code is serial)."""
    c_path, _, c_text, h_text = read_source(Path(path))
    meta = _parse_metadata(c_path, c_text)
    so = compile_library(c_path, c_text, h_text)
    lib = _bind(c_path, so, meta)
    return CRuntime(getattr(fmt, "name", "c"), Path(path), meta, so, lib)
