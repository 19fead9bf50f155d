"""Torch-free helpers for .tflite flatbuffers: the metadata section, op names, int8 I/O quantization.

The LiteRT and TFLM loaders read metadata through here; the LiteRT exporter writes it through here.
Parsing uses the flatc-generated schema that ai-edge-litert ships (tflite-micro ships the same
schema; either is enough), so neither torch nor TensorFlow is needed.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

import numpy as np

from mnist_edge.core.deps import require
from mnist_edge.core.errors import ExportError, ModelFileError

FILE_IDENTIFIER = b"TFL3"  # bytes 4..8 of every .tflite flatbuffer
BUFFER_ALIGNMENT = 16  # what TFLM's tflite_flatbuffer_align and optimized MCU kernels expect
INT8_RANGE = (-128, 127)


def schema() -> ModuleType:
    """The generated TFLite schema module, from ai-edge-litert or else tflite-micro."""
    if importlib.util.find_spec("ai_edge_litert") is None and importlib.util.find_spec("tflite_micro") is not None:
        return require("tflite_micro.tensorflow.lite.micro.python.schema_py_generated", "litert",
                       "reading .tflite models")
    return require("ai_edge_litert.schema_py_generated", "litert", "reading .tflite models")


def parse(buf: bytes, source: str):
    """The root `Model` table of a .tflite buffer; a foreign or truncated file is a ModelFileError."""
    if len(buf) < 8 or buf[4:8] != FILE_IDENTIFIER:
        raise ModelFileError(f"{source}: not a .tflite model (no TFL3 flatbuffer identifier)")
    try:
        model = schema().Model.GetRootAs(buf, 0)
        model.Version(), model.MetadataLength(), model.BuffersLength()  # touch the root: fails if cut short
    except Exception:  # flatbuffers raises IndexError/struct.error on a truncated buffer
        raise ModelFileError(f"{source}: corrupt .tflite model (unreadable flatbuffer)") from None
    return model


def read_metadata(buf: bytes, name: str, source: str) -> bytes | None:
    """The bytes stored under `name` in the flatbuffer's metadata section, or None if absent."""
    model = parse(buf, source)
    try:
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() == name.encode():
                data = model.Buffers(entry.Buffer())
                return data.DataAsNumpy().tobytes() if data.DataLength() else b""
    except Exception:  # an index past the buffer table, a cut-off vector
        raise ModelFileError(f"{source}: corrupt .tflite model (bad metadata section)") from None
    return None


class _AlignedBuffer:
    """A BufferT stand-in that packs its bytes 16-byte aligned (the generated Pack aligns to 1)."""

    def __init__(self, data):
        self.data = None if data is None else bytes(np.asarray(data, dtype=np.uint8))

    def Pack(self, builder):  # noqa: N802 - the name the generated ModelT.Pack calls
        fb = schema()
        offset = None
        if self.data is not None:
            n = len(self.data)
            builder.StartVector(1, n, BUFFER_ALIGNMENT)  # pads so that the data start is aligned
            builder.head -= n
            builder.Bytes[builder.head:builder.head + n] = self.data
            offset = builder.EndVector()
        fb.BufferStart(builder)
        if offset is not None:
            fb.BufferAddData(builder, offset)
        return fb.BufferEnd(builder)


def with_metadata(buf: bytes, name: str, value: bytes) -> bytes:
    """A copy of the model with `value` stored under `name` in its metadata section (replacing one)."""
    import flatbuffers

    fb = schema()
    model = fb.ModelT.InitFromObj(parse(buf, "model"))
    if any(b.offset > 1 or b.size for b in model.buffers):
        # data kept outside the flatbuffer (models > 2 GB) would be lost by repacking
        raise ExportError("the converter wrote buffers outside the flatbuffer: cannot add metadata")
    model.metadata = [m for m in (model.metadata or []) if m.name != name.encode()]
    model.buffers = [_AlignedBuffer(b.data) for b in model.buffers]
    model.buffers.append(_AlignedBuffer(np.frombuffer(value, np.uint8)))
    entry = fb.MetadataT()
    entry.name, entry.buffer = name, len(model.buffers) - 1
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(buf) + len(value) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def buffer_offsets(buf: bytes) -> list[int]:
    """Where each non-empty constant buffer's data starts in the file (to check alignment)."""
    model = parse(buf, "model")
    offsets = []
    for i in range(model.BuffersLength()):
        b = model.Buffers(i)
        if b.DataLength():
            offsets.append(b._tab.Vector(b._tab.Offset(4)))  # field 4 = `data`; Vector(): its first byte
    return offsets


def op_names(buf: bytes, source: str = "model") -> list[str]:
    """The builtin operator names the main subgraph uses, in order of first use ('CONV_2D', ...)."""
    fb = schema()
    model = parse(buf, source)
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        codes.append(max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()))  # codes >127 live in BuiltinCode
    graph, used = model.Subgraphs(0), []
    for i in range(graph.OperatorsLength()):
        name = names.get(codes[graph.Operators(i).OpcodeIndex()], "CUSTOM")
        if name not in used:
            used.append(name)
    return used


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """float32 -> int8 the way TFLite's QUANTIZE op does it (round half away from zero, saturate)."""
    v = np.asarray(x, np.float32) / np.float32(scale)
    q = np.trunc(v + np.copysign(np.float32(0.5), v)) + zero_point
    return np.clip(q, *INT8_RANGE).astype(np.int8)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """int8 -> float32: (q - zero_point) * scale."""
    return ((q.astype(np.int32) - zero_point) * np.float32(scale)).astype(np.float32)


def io_quantization(details: dict, source: str) -> tuple[float, int] | None:
    """(scale, zero_point) of an int8 input/output from LiteRT/TFLM tensor details; None for float32."""
    if details["dtype"] == np.float32:
        return None
    qp = details.get("quantization_parameters") or {}
    scales, zps = qp.get("scales", ()), qp.get("zero_points", ())
    if details["dtype"] != np.int8 or len(scales) != 1 or len(zps) != 1:
        raise ModelFileError(f"{source}: unsupported model I/O ({np.dtype(details['dtype']).name}, "
                             f"{len(scales)} scales): expected float32 or per-tensor int8")
    return float(scales[0]), int(zps[0])
