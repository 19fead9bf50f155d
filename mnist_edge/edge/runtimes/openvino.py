"""OpenVINO runtime for OpenVINO IR folders (torch-free): model.xml + model.bin, run by the CPU plugin.

The mnist-edge metadata travels in the IR's rt_info (saved into model.xml). Inference runs at fp32
precision on every CPU: the CPU plugin would otherwise pick bf16 where the CPU has it (AVX-512 BF16,
AMX), which moves the logits by up to 4e-2 against the 1e-4 fp32 bar. The int8 IR's quantized layers
run in int8 either way.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnist_edge.core.deps import require
from mnist_edge.core.errors import ModelFileError, first_line
from mnist_edge.core.formats import Format, Runtime
from mnist_edge.core.metadata import METADATA_KEY, ModelMetadata

XML_FILE, BIN_FILE = "model.xml", "model.bin"  # the IR's graph and its weights, in the format's folder
DEVICE = "CPU"
PRECISION = "f32"  # INFERENCE_PRECISION_HINT: fp32 everywhere, never the CPU plugin's bf16 default


def metadata_of(model, source: str) -> ModelMetadata:
    """The mnist-edge metadata in an ov.Model's rt_info."""
    if not model.has_rt_info([METADATA_KEY]):
        raise ModelFileError(f"{source}: not an mnist-edge model (no mnist-edge metadata)")
    return ModelMetadata.from_json(model.get_rt_info([METADATA_KEY]).astype(str), source)


def set_metadata(model, meta: ModelMetadata) -> None:
    model.set_rt_info(meta.to_json(), [METADATA_KEY])


@dataclass
class OpenVinoRuntime(Runtime):
    """One compiled model and its infer request; run() is serialised by a lock (a request is not thread-safe)."""

    format: str
    path: Path
    metadata: ModelMetadata
    compiled: object  # openvino.CompiledModel
    request: object  # openvino.InferRequest
    tensor: type  # openvino.Tensor
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, 1, 28, 28), already normalised -> float32 logits (N, num_classes)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not len(x):
            return np.zeros((0, len(self.metadata.class_names)), np.float32)
        with self._lock:
            self.request.set_input_tensor(self.tensor(x, shared_memory=True))  # no copy of the input
            self.request.infer()
            return self.request.get_output_tensor(0).data.copy()  # the request reuses its output buffer


def reason(e: BaseException, limit: int = 160) -> str:
    """The line of an OpenVINO error that says what is wrong (its first lines are C++ source locations)."""
    lines = [ln.strip() for ln in str(e).splitlines()]
    said = [ln for ln in lines if ln and not ln.startswith(("Exception from ", "Check '"))]
    return said[-1].split(" Please check")[0][:limit] if said else first_line(e, limit)


def compile_options(threads: int | None) -> dict:
    opts = {"INFERENCE_PRECISION_HINT": PRECISION, "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        opts["INFERENCE_NUM_THREADS"] = int(threads)
    return opts


def load(path: Path, fmt: Format, threads: int | None = None) -> OpenVinoRuntime:
    """An OpenVINO runtime for an IR folder written by mnist-edge (any batch size)."""
    path = Path(path)
    ov = require("openvino", "openvino")
    xml, weights = path / XML_FILE, path / BIN_FILE
    for p in (xml, weights):
        if not p.is_file():
            raise ModelFileError(f"{path}: not an OpenVINO model folder (no {p.name})")
    core = ov.Core()
    try:
        model = core.read_model(str(xml), str(weights))
    except Exception as e:  # openvino raises RuntimeError / its own Exception types on a bad IR
        raise ModelFileError(f"{path}: corrupt or not an OpenVINO IR ({reason(e)})") from None
    meta = metadata_of(model, str(path))
    inputs, outputs = model.inputs, model.outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelFileError(f"{path}: expected one input and one output, found {len(inputs)} and {len(outputs)}")
    shape = inputs[0].get_partial_shape()
    if shape.rank.is_dynamic or [d.get_length() if d.is_static else -1 for d in shape][1:] != list(meta.input_shape):
        raise ModelFileError(f"{path}: unexpected model input shape {shape}, expected [N, "
                             f"{', '.join(map(str, meta.input_shape))}]")
    try:
        compiled = core.compile_model(model, DEVICE, compile_options(threads))
        rt = OpenVinoRuntime(fmt.name, path, meta, compiled, compiled.create_infer_request(), ov.Tensor)
        rt.run(np.zeros((1, *meta.input_shape), np.float32))  # prove it runs
    except Exception as e:
        raise ModelFileError(f"{path}: the model does not run ({reason(e)})") from None
    return rt
