"""LiteRT (.tflite) exporters: fp32 with a dynamic batch, and full-integer int8 for phones and TFLM.

Both convert the PyTorch model with litert-torch (no TensorFlow needed) and store the mnist-edge
metadata JSON in the flatbuffer's own metadata section under "mnist_edge.metadata", so the file
carries it alone, on LiteRT and on TensorFlow Lite Micro alike.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from mnist_edge.core.deps import require
from mnist_edge.core.errors import ExportError
from mnist_edge.core.formats import MAX_BATCH
from mnist_edge.core.metadata import METADATA_KEY, ModelMetadata
from mnist_edge.core.quiet import native_output_dropped, quiet
from mnist_edge.edge.runtimes import tflite_model
from mnist_edge.pytorch.exporters.job import example_input

INT8_BATCH = 1  # int8 is a fixed batch-1 program: what TFLM needs and what edge devices run


def _litert_torch():
    """The litert_torch module, or a MissingExtraError naming the extra that brings it."""
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")  # its progress bars are not actionable
    with native_output_dropped():  # absl and oneDNN notes printed on fd 2 at import
        return require("litert_torch", "litert-export", "LiteRT export")


def _quiet():
    """Silence the converter's warnings, prints and C++ logging (MLIR pass notes on fd 2)."""
    return quiet(stdout=True, native=True)


def _convert(model, example: tuple, **options) -> bytes:
    """The .tflite bytes litert-torch makes of `model` (through a temp file: its only public output)."""
    litert_torch = _litert_torch()
    with _quiet(), tempfile.TemporaryDirectory(prefix="mnist-edge-litert-") as work:
        out = Path(work) / "model.tflite"
        litert_torch.convert(model, example, **options).export(str(out))
        return out.read_bytes()


def _write(tmp: Path, tflite: bytes, meta: ModelMetadata) -> ModelMetadata:
    """Store `meta` in the model's metadata section and write the file."""
    tmp.write_bytes(tflite_model.with_metadata(tflite, METADATA_KEY, meta.to_json().encode()))
    return meta


def export_fp32(job, fmt, tmp: Path) -> ModelMetadata:
    """float32 .tflite, input (batch, *INPUT_SHAPE) with batch 1..MAX_BATCH, output (batch, num_classes)."""
    import torch

    example = (example_input(),)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with torch.no_grad():
        fp32 = _convert(job.model.eval(), example, dynamic_shapes=({0: batch},))
    return _write(tmp, fp32, job.metadata)


def _calibration_images(job) -> np.ndarray:
    """job.calibration as float32, refusing an empty set."""
    images = job.calibration
    if images is None or not len(images):
        raise ExportError("LiteRT int8 export needs calibration images (job.calibration is empty)")
    return np.ascontiguousarray(images, dtype=np.float32)


def _quantize(model, images: np.ndarray) -> bytes:
    """Full-integer int8 .tflite bytes (int8 weights, activations, input and output), batch 1."""
    import torch

    _litert_torch()  # first: a MissingExtraError rather than the ImportError of the lines below
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    example = (torch.from_numpy(images[:INT8_BATCH]),)
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    with _quiet(), torch.no_grad():
        graph = prepare_pt2e(torch.export.export(model.eval(), example).module(), quantizer)
        for i in range(len(images)):  # the graph is traced at batch 1: feed the images one by one
            graph(torch.from_numpy(images[i:i + INT8_BATCH]))
        graph = convert_pt2e(graph, fold_quantize=False)  # the converter folds the q/dq pairs itself
        move_exported_model_to_eval(graph)
        return _convert(graph, example, quant_config=QuantConfig(pt2e_quantizer=quantizer))


def export_int8(job, fmt, tmp: Path) -> ModelMetadata:
    """Full-integer int8 .tflite, batch 1, int8 input/output (the loader quantizes and dequantizes)."""
    images = _calibration_images(job)
    how = (f"litert-torch PT2E static int8: per-channel int8 weights, int8 activations (histogram "
           f"calibration on {len(images)} images), int8 input/output")
    return _write(tmp, _quantize(job.model, images), replace(job.metadata, quantization=how))
