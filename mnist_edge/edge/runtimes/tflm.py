"""TensorFlow Lite Micro on the host: runs the int8 .tflite with TFLM's own kernels (torch-free).

This is how the `tflm-int8` row is verified: the exact bytes the firmware compiles in (from the
`tflm/` folder's model_data.cc, or a .tflite file) run through the tflite-micro Python interpreter,
with an arena of the smallest size that works, measured here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_edge.core.deps import require
from mnist_edge.core.errors import ModelFileError, first_line
from mnist_edge.core.formats import Runtime
from mnist_edge.core.metadata import ModelMetadata
from mnist_edge.core.quiet import native_output_dropped
from mnist_edge.edge.runtimes import litert as runtime_litert
from mnist_edge.edge.runtimes import tflite_model

MODEL_SOURCE = "model_data.cc"  # in a tflm/ folder: the C array holding the model
ARENA_SEARCH_MAX = 16 * 1024 * 1024


def _runtime_module():
    """tflite_micro's runtime module, or a MissingExtraError naming the extra."""
    return require("tflite_micro.python.tflite_micro.runtime", "tflm", "running models on TensorFlow Lite Micro")


def _fits(model: bytes, arena: int, example: np.ndarray) -> bool:
    """Whether TFLM can allocate and invoke the model in an arena of `arena` bytes."""
    runtime = _runtime_module()
    try:
        interp = runtime.Interpreter.from_bytes(model, arena_size=arena)
        interp.set_input(example, 0)
        interp.invoke()
    except RuntimeError:
        return False
    return True


def measure_arena(model: bytes, source: str = "model") -> int:
    """The smallest tensor arena, in bytes, in which TFLM runs the model (binary search)."""
    example = np.zeros(_input_shape(model, source), np.int8)
    lo, hi = 0, 64 * 1024  # lo never fits, hi fits
    with native_output_dropped():  # every arena that is too small prints several lines
        while not _fits(model, hi, example):
            lo, hi = hi, hi * 4
            if hi > ARENA_SEARCH_MAX:
                raise ModelFileError(f"{source}: TFLM cannot run it in {ARENA_SEARCH_MAX} bytes of arena")
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if _fits(model, mid, example) else (mid, hi)
    return hi


def _input_shape(model: bytes, source: str) -> list[int]:
    """The input tensor's static shape, read from the flatbuffer."""
    graph = tflite_model.parse(model, source).Subgraphs(0)
    return [int(d) for d in graph.Tensors(graph.Inputs(0)).ShapeAsNumpy()]


def _require_int8_io(model: bytes, source: str) -> None:
    """Refuse a model whose input or output is not int8 (before any arena search runs it)."""
    graph, int8 = tflite_model.parse(model, source).Subgraphs(0), tflite_model.schema().TensorType.INT8
    ends = [graph.Tensors(graph.Inputs(i)) for i in range(graph.InputsLength())]
    ends += [graph.Tensors(graph.Outputs(i)) for i in range(graph.OutputsLength())]
    if len(ends) != 2 or any(t.Type() != int8 for t in ends):
        raise ModelFileError(f"{source}: not a full-integer int8 model with one input and one output "
                             "(TFLM runs the int8 export)")


def read_c_array(source: Path) -> bytes:
    """The model bytes in a generated model_data.cc (its hex initialiser, checked against its length)."""
    text = source.read_text(encoding="ascii", errors="replace")
    body = re.search(r"g_model_data\[\]\s*=\s*\{(.*?)\};", text, re.S)
    length = re.search(r"g_model_data_len\s*=\s*(\d+)", text)
    if not body or not length:
        raise ModelFileError(f"{source}: not an mnist-edge TFLM model source (no g_model_data array)")
    data = bytes(int(h, 16) for h in re.findall(r"0x([0-9a-fA-F]{2})", body.group(1)))
    if len(data) != int(length.group(1)):
        raise ModelFileError(f"{source}: corrupt model array ({len(data)} bytes, length says {length.group(1)})")
    return data


def read_model(path: Path) -> bytes:
    """The model bytes of a tflm/ folder (from its C array) or of a .tflite file."""
    if path.is_dir():
        if not (path / MODEL_SOURCE).is_file():
            raise ModelFileError(f"{path}: not a TFLM export folder (no {MODEL_SOURCE})")
        return read_c_array(path / MODEL_SOURCE)
    return runtime_litert.read_file(path)


@dataclass
class TFLMRuntime(Runtime):
    """A TFLM interpreter for a batch-1 full-integer int8 model; run() loops over the batch."""

    format: str
    path: Path
    metadata: ModelMetadata
    interpreter: object
    input_quant: tuple[float, int]
    output_quant: tuple[float, int]
    model_bytes: int  # flash: the flatbuffer the firmware compiles in
    arena_bytes: int  # RAM: the smallest tensor arena that works on this host

    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, 1, 28, 28), already normalised -> float32 logits (N, num_classes)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.zeros((len(x), len(self.metadata.class_names)), np.float32)
        for i in range(len(x)):
            self.interpreter.set_input(tflite_model.quantize(x[i:i + 1], *self.input_quant), 0)
            self.interpreter.invoke()
            out[i] = tflite_model.dequantize(self.interpreter.get_output(0), *self.output_quant)[0]
        return out

    def footprint(self) -> dict:
        """What a microcontroller needs: the model in flash, the tensor arena in RAM (measured, no margin)."""
        return {"flash_bytes": self.model_bytes, "arena_bytes": self.arena_bytes}


def _verify(model: bytes, path: Path) -> None:
    """Run LiteRT's flatbuffer verifier first: TFLM trusts its model bytes and may crash on bad ones."""
    try:
        runtime_litert.interpreter_class()(model_content=model)
    except (ValueError, RuntimeError) as e:
        first = first_line(e, 160)
        raise ModelFileError(f"{path}: corrupt or not a .tflite model ({first})") from None


def load(path: Path, fmt, threads: int | None = None) -> TFLMRuntime:
    """A TFLM runtime for a tflm/ export folder or an int8 .tflite (`threads` is ignored: TFLM is serial)."""
    path = Path(path)
    runtime = _runtime_module()
    model = read_model(path)
    _verify(model, path)
    meta = runtime_litert.read_metadata(model, str(path))
    _require_int8_io(model, str(path))
    try:
        arena = measure_arena(model, str(path))
        interp = runtime.Interpreter.from_bytes(model, arena_size=arena)
    except (RuntimeError, ValueError) as e:
        raise ModelFileError(f"{path}: TFLM cannot run this model ({first_line(e, 160)})") from None
    in_q = tflite_model.io_quantization(interp.get_input_details(0), str(path))
    out_q = tflite_model.io_quantization(interp.get_output_details(0), str(path))
    return TFLMRuntime(fmt.name, path, meta, interp, in_q, out_q, len(model), arena)
