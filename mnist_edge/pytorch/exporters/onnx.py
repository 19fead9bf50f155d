"""ONNX: opset 18 with a dynamic batch (fp32), and ONNX Runtime's quantization of it (int8)."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import onnx
import torch

from mnist_edge.core.errors import ExportError
from mnist_edge.core.formats import MAX_BATCH, Format
from mnist_edge.core.metadata import ModelMetadata
from mnist_edge.core.quiet import quiet
from mnist_edge.core.settings import DEFAULT_INT8_RECIPE, QUANTIZE_MODES
from mnist_edge.pytorch.exporters import onnx_int8
from mnist_edge.pytorch.exporters.job import ExportJob, example_input
from mnist_edge.pytorch.exporters.onnx_int8 import save

ONNX_OPSET = 18
# quantize_dynamic on Conv makes ConvInteger (4x slower than fp32 here, missing from some execution
# providers): dynamic mode quantizes the matrix products only.
DYNAMIC_OP_TYPES = ["MatMul", "Gemm"]


def export_fp32(job: ExportJob, fmt: Format, tmp: Path) -> ModelMetadata:
    """Input `input` [batch, 1, 28, 28] with a dynamic batch, output `logits` [batch, C]."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with quiet(stdout=True), torch.no_grad():
        program = torch.onnx.export(
            job.model, (example_input(),), dynamo=True, opset_version=ONNX_OPSET,
            input_names=["input"], output_names=["logits"], dynamic_shapes=({0: batch},),
            external_data=False, optimize=True, verbose=False,
        )
    save(program.model_proto, job.metadata, tmp)
    return job.metadata


def export_int8(job: ExportJob, fmt: Format, tmp: Path) -> ModelMetadata:
    """ONNX Runtime quantization of the verified fp32 ONNX model: a static Int8Recipe (default) or dynamic."""
    mode = job.settings.quantize_mode
    if mode not in QUANTIZE_MODES:
        raise ExportError(f"unknown quantize mode {mode!r} ({' or '.join(QUANTIZE_MODES)})")
    src = job.sources[fmt.source]
    if mode == "static":
        return onnx_int8.write(src, tmp, job.calibration, job.settings.int8_recipe or DEFAULT_INT8_RECIPE,
                               job.metadata)
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="mnist-edge-quant-") as work, quiet(stdout=True):
        pre, q = Path(work) / "pre.onnx", Path(work) / "int8.onnx"
        onnx_int8.preprocess(src, pre)
        quantize_dynamic(str(pre), str(q), op_types_to_quantize=DYNAMIC_OP_TYPES,
                         weight_type=QuantType.QInt8, per_channel=False)
        proto = onnx.load_model(str(q))
    meta = replace(job.metadata, quantization=f"onnxruntime dynamic int8 ({'/'.join(DYNAMIC_OP_TYPES)} only)")
    save(proto, meta, tmp)
    return meta
