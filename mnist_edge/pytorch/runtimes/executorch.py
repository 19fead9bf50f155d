"""ExecuTorch runtime for model.pte / model.int8.pte (XNNPACK delegate; needs torch, like ExecuTorch's pybindings).

The programs take a fixed batch (1, written by the exporter); `run` loops over larger batches.
Threads: XNNPACK runs on ExecuTorch's own process-wide pthreadpool, not torch's, so
torch.set_num_threads has no effect; the pool is resized with `_unsafe_reset_threadpool`, which
frees the old pool that already-loaded methods still point to. Every runtime therefore re-loads
its method after a resize (`_pool_generation`), never running on a freed pool.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnist_edge.core.deps import require
from mnist_edge.core.errors import ModelFileError
from mnist_edge.core.formats import Runtime
from mnist_edge.core.metadata import ModelMetadata

METADATA_METHOD = "mnist_edge_metadata"  # constant methods written by exporter_executorch
CHECKSUM_METHOD = "mnist_edge_sha256"  # SHA-256 (hex) of the whole file, with CHECKSUM_SLOT in its place
# What the exporter writes into the checksum method first: as long as a SHA-256 hex digest, so the
# digest of the file replaces it in place, and the runtime can put it back to recompute the digest.
CHECKSUM_SLOT = "mnist-edge:sha256:placeholder:".ljust(64, "-")
EXTRA = "executorch"
# A .pte starts with a flatbuffer root offset (4 bytes), the file identifier "ET" + 2 version
# characters, then ExecuTorch's extended header: magic "eh00", its length (u32), the program size
# (u64), the segment base offset (u64) and, if the header is long enough, the segment size (u64).
_HEAD = struct.Struct("<I4s4sIQQQ")
_MIN_SIZE = 64  # ExecuTorch's loader reads this many head bytes before anything else

_pool_generation = 0  # bumped on every thread-pool resize; see the module docstring
_pool_lock = threading.Lock()


def _portable_lib():
    """ExecuTorch's pybindings module, or MissingExtraError naming the extra.

    Imports the compiled `_C` directly: `executorch.runtime` wraps the same module but imports
    executorch.exir (torch._dynamo & co.), about 4 s of start-up; `_C` only needs torch loaded first.
    """
    require("torch", EXTRA, "running .pte models")  # loads libtorch, which _C links against
    try:
        from executorch.extension.pybindings import _C
    except ImportError:  # a differently packaged executorch: the public (slower to import) wrapper
        return require("executorch.extension.pybindings.portable_lib", EXTRA, "running .pte models")
    return _C


@contextlib.contextmanager
def _capture_log():
    """Collect ExecuTorch's log lines (it writes its C++ log through Python's sys.stderr)."""
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        yield buf


def _last_line(buf: io.StringIO, fallback: str) -> str:
    """The last log line without its "[file.cpp:N] " prefix: the runtime's own reason."""
    lines = [ln.split("] ", 1)[-1].strip() for ln in buf.getvalue().splitlines() if ln.strip()]
    return (lines[-1] if lines else fallback)[:160]


@dataclass(frozen=True)
class PteHeader:
    """The sizes a .pte's extended header declares."""

    program_size: int  # the flatbuffer (methods, metadata strings)
    segment_offset: int  # where the segments (weights, XNNPACK payloads) start; 0 if none
    total_size: int  # what the whole file must hold


def parse_header(head: bytes) -> PteHeader | None:
    """The extended header of a .pte from its first bytes, or None if they are not one."""
    if len(head) < _HEAD.size:
        return None
    _, ident, magic, hlen, program_size, seg_offset, seg_size = _HEAD.unpack(head[:_HEAD.size])
    if not (ident[:2] == b"ET" and ident[2:].isalnum()) or magic != b"eh00":
        return None
    seg_size = seg_size if hlen >= _HEAD.size - 8 else 0  # older headers lack the segment size
    return PteHeader(program_size, seg_offset, max(program_size, seg_offset + seg_size))


def check_header(path: Path) -> PteHeader:
    """Refuse a file that is not a whole .pte before ExecuTorch parses it.

    Needed, not just polite: for a foreign file ExecuTorch logs its first bytes, and bytes that
    are not UTF-8 make the pybindings' logger throw inside C++, which aborts the whole process.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(_HEAD.size)
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read ({e.strerror or e})") from None
    if size == 0:
        raise ModelFileError(f"{path}: empty file, not a model")
    header = parse_header(head) if size >= _MIN_SIZE else None
    if header is None:
        raise ModelFileError(f"{path}: not an ExecuTorch program (no .pte header)")
    if size < header.total_size:
        raise ModelFileError(f"{path}: truncated ExecuTorch program ({size} of {header.total_size} bytes)")
    return header


def file_sha256(data: bytes) -> str:
    """The checksum stored in a .pte: SHA-256 of the file with CHECKSUM_SLOT in the checksum's place."""
    return hashlib.sha256(data).hexdigest()


def _check_integrity(program, path: Path) -> None:
    """Refuse a damaged file (weights, XNNPACK payloads, strings) before XNNPACK parses it.

    ExecuTorch verifies the flatbuffer's structure only; a damaged XNNPACK payload can make it
    log non-UTF-8 bytes, which aborts the process (see check_header).
    """
    if CHECKSUM_METHOD not in _method_names(program):
        return  # not written by mnist-edge's exporter: nothing to compare (metadata is still required)
    value = program.load_method(CHECKSUM_METHOD)([])
    stored = value[0] if len(value) == 1 and isinstance(value[0], str) else ""
    digest = stored.encode()
    data = path.read_bytes()
    if len(digest) != 64 or file_sha256(data.replace(digest, CHECKSUM_SLOT.encode(), 1)) != stored:
        raise ModelFileError(f"{path}: corrupt ExecuTorch program (checksum mismatch: the file was damaged)")


def set_threads(threads: int | None) -> None:
    """Size ExecuTorch's process-wide thread pool (None or 0: leave it, default one per CPU)."""
    global _pool_generation
    if not threads:
        return
    lib = _portable_lib()
    with _pool_lock, _capture_log():  # it logs "Resetting threadpool to N threads."
        if lib._threadpool_get_thread_count() != threads:
            lib._unsafe_reset_threadpool(int(threads))
            _pool_generation += 1


def thread_count() -> int:
    """The number of threads ExecuTorch's pool runs XNNPACK with."""
    with _capture_log():  # the first call creates the pool, which logs its CPU probing
        return int(_portable_lib()._threadpool_get_thread_count())


def _method_names(program) -> list[str]:
    return [program.get_method_name(i) for i in range(program.num_methods())]


def _read_metadata(program, path: Path) -> ModelMetadata:
    if METADATA_METHOD not in _method_names(program):
        raise ModelFileError(f"{path}: not an mnist-edge model (no mnist-edge metadata)")
    value = program.load_method(METADATA_METHOD)([])
    if len(value) != 1 or not isinstance(value[0], str):
        raise ModelFileError(f"{path}: corrupt mnist-edge metadata (not a string)")
    return ModelMetadata.from_json(value[0], str(path))


@dataclass
class ExecuTorchRuntime(Runtime):
    """One loaded .pte: its `forward` method and the fixed input shape it was exported with."""

    format: str
    path: Path
    metadata: ModelMetadata
    program: object  # ExecuTorchProgram (pybindings)
    input_shape: tuple[int, ...]  # (batch, 1, 28, 28), batch fixed at export
    _method: object = field(default=None, init=False, repr=False)
    _generation: int = field(default=-1, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)  # Methods are not re-entrant

    @property
    def batch(self) -> int:
        return self.input_shape[0]

    def _forward(self):
        """The forward method, re-loaded if the thread pool was resized since (its old pool is freed)."""
        if self._generation != _pool_generation:
            with _capture_log():  # XNNPACK's first init logs its CPU probing
                self._method = self.program.load_method("forward")
            self._generation = _pool_generation
        return self._method

    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, 1, 28, 28), already normalised -> float32 logits (N, num_classes)."""
        import torch

        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != self.input_shape[1:]:
            raise ValueError(f"expected input (N, {', '.join(map(str, self.input_shape[1:]))}), got {x.shape}")
        b, n = self.batch, len(x)
        if n % b:  # only for a program exported with a batch > 1: pad the last chunk
            x = np.concatenate([x, np.zeros((b - n % b, *x.shape[1:]), np.float32)])
        out = np.empty((len(x), len(self.metadata.class_names)), np.float32)
        with self._lock:
            forward = self._forward()
            for i in range(0, len(x), b):
                # clone_outputs=False: the result is copied into `out` at once, before the next call
                out[i:i + b] = forward([torch.from_numpy(x[i:i + b])], clone_outputs=False)[0].numpy()
        return out[:n]


def _load_program(lib, path: Path):
    """The parsed program, or ModelFileError with the runtime's own reason."""
    with _capture_log() as log:
        try:
            return lib._load_program(str(path), program_verification=lib.Verification.InternalConsistency)
        except RuntimeError:
            reason = _last_line(log, "failed to load")
    raise ModelFileError(f"{path}: corrupt or not an ExecuTorch program ({reason})")


def load(path: Path, fmt, threads: int | None = None) -> ExecuTorchRuntime:
    """Load a .pte written by mnist-edge; any problem with the file is one ModelFileError line."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    check_header(path)
    lib = _portable_lib()
    set_threads(threads)
    program = _load_program(lib, path)
    _check_integrity(program, path)
    meta = _read_metadata(program, path)
    names = _method_names(program)
    if "forward" not in names:
        raise ModelFileError(f"{path}: not an mnist-edge model (no forward method)")
    info = program.method_meta("forward")
    if info.num_inputs() != 1 or info.num_outputs() != 1:
        raise ModelFileError(f"{path}: unexpected model signature ({info.num_inputs()} inputs, "
                             f"{info.num_outputs()} outputs)")
    shape = tuple(info.input_tensor_meta(0).sizes())
    if list(shape[1:]) != list(meta.input_shape):
        raise ModelFileError(f"{path}: unexpected model input {list(shape)}")
    rt = ExecuTorchRuntime(fmt.name, path, meta, program, shape)
    try:
        rt._forward()  # delegate init now, so a broken delegate payload fails at load
    except RuntimeError:
        raise ModelFileError(f"{path}: corrupt ExecuTorch program (its forward method does not load)") from None
    return rt
