"""LiteRT runtime for .tflite models (torch-free): ai-edge-litert's Interpreter, XNNPACK on the CPU.

fp32 files have a dynamic batch: the input is resized to each call's batch. The int8 files are a
fixed batch-1 program with int8 input and output: run() quantizes the normalised float32 images with
the input tensor's scale/zero point, runs them one by one and dequantizes the logits.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnist_edge.core.deps import require
from mnist_edge.core.errors import ModelFileError, first_line
from mnist_edge.core.formats import Runtime
from mnist_edge.core.metadata import METADATA_KEY, ModelMetadata
from mnist_edge.core.quiet import native_output_dropped
from mnist_edge.edge.runtimes import tflite_model


def interpreter_class():
    """ai_edge_litert's Interpreter, or a MissingExtraError naming the extra."""
    return require("ai_edge_litert.interpreter", "litert", "running .tflite models").Interpreter


def read_file(path: Path) -> bytes:
    """The bytes of a model file; missing, folder or empty is a one-line ModelFileError."""
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder, not a model file")
    buf = path.read_bytes()
    if not buf:
        raise ModelFileError(f"{path}: empty file, not a model")
    return buf


def read_metadata(buf: bytes, source: str) -> ModelMetadata:
    """The mnist-edge metadata stored in a .tflite flatbuffer's metadata section."""
    raw = tflite_model.read_metadata(buf, METADATA_KEY, source)
    if raw is None:
        raise ModelFileError(f"{source}: not an mnist-edge model (no mnist-edge metadata)")
    return ModelMetadata.from_json(raw, source)


@dataclass
class LiteRTRuntime(Runtime):
    """One LiteRT interpreter; run() is serialised by a lock (an interpreter is not thread-safe)."""

    format: str
    path: Path
    metadata: ModelMetadata
    interpreter: object
    input_index: int
    output_index: int
    dynamic_batch: bool  # False: a fixed batch-1 program, run image by image
    input_quant: tuple[float, int] | None  # (scale, zero point) of an int8 input; None for float32
    output_quant: tuple[float, int] | None
    _batch: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, 1, 28, 28), already normalised -> float32 logits (N, num_classes)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not len(x):
            return np.zeros((0, len(self.metadata.class_names)), np.float32)
        with self._lock:
            if self.dynamic_batch:
                return self._invoke(x)
            return np.concatenate([self._invoke(x[i:i + 1]) for i in range(len(x))])

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        if len(x) != self._batch:
            self.interpreter.resize_tensor_input(self.input_index, [len(x), *x.shape[1:]], strict=True)
            self.interpreter.allocate_tensors()
            self._batch = len(x)
        if self.input_quant:
            x = tflite_model.quantize(x, *self.input_quant)
        self.interpreter.set_tensor(self.input_index, x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output_index)
        return tflite_model.dequantize(y, *self.output_quant) if self.output_quant else y.astype(np.float32)


def _check_io(interp, meta: ModelMetadata, source: str) -> tuple[dict, dict]:
    """The single input and output details, refusing a model whose input is not (N, 1, 28, 28)."""
    inputs, outputs = interp.get_input_details(), interp.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelFileError(f"{source}: expected one input and one output, found {len(inputs)} and {len(outputs)}")
    shape = [int(d) for d in inputs[0]["shape_signature"]]
    if shape[1:] != list(meta.input_shape):
        raise ModelFileError(f"{source}: unexpected model input shape {shape}, expected [N, "
                             f"{', '.join(map(str, meta.input_shape))}]")
    return inputs[0], outputs[0]


def load(path: Path, fmt, threads: int | None = None) -> LiteRTRuntime:
    """A LiteRT runtime for a .tflite file written by mnist-edge (any batch size)."""
    path = Path(path)
    interpreter = interpreter_class()
    buf = read_file(path)
    try:
        # the interpreter runs the flatbuffer verifier, so the file is sound before we parse it;
        # quiet: it prints "INFO: Created TensorFlow Lite XNNPACK delegate" on fd 2 (loading only, not per run)
        with native_output_dropped():
            interp = interpreter(model_content=buf, num_threads=threads or None)
    except (ValueError, RuntimeError) as e:
        first = first_line(e, 160)
        raise ModelFileError(f"{path}: corrupt or not a .tflite model ({first})") from None
    meta = read_metadata(buf, str(path))
    inp, out = _check_io(interp, meta, str(path))
    dynamic = int(inp["shape_signature"][0]) == -1
    rt = LiteRTRuntime(fmt.name, path, meta, interp, inp["index"], out["index"], dynamic,
                       tflite_model.io_quantization(inp, str(path)),
                       tflite_model.io_quantization(out, str(path)), _batch=0)
    try:
        with native_output_dropped():
            rt._invoke(np.zeros((1, *meta.input_shape), np.float32))  # allocate, and prove it runs
    except (ValueError, RuntimeError) as e:
        raise ModelFileError(f"{path}: the model does not run ({first_line(e, 160)})") from None
    return rt
