"""ONNX: opset 18 with a dynamic batch (fp32), and ONNX Runtime's quantization of it (int8)."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import torch

from mnist_edge.core.errors import ExportError
from mnist_edge.core.formats import Format
from mnist_edge.core.metadata import METADATA_KEY, ModelMetadata
from mnist_edge.core.quiet import quiet
from mnist_edge.core.settings import QUANTIZE_MODES
from mnist_edge.pytorch.export import ExportJob, example_input

ONNX_OPSET = 18
MAX_BATCH = 65536  # the batch axis of the exported graph goes up to here
# quantize_dynamic on Conv makes ConvInteger (4x slower than fp32 here, missing from some execution
# providers): dynamic mode quantizes the matrix products only.
DYNAMIC_OP_TYPES = ["MatMul", "Gemm"]
CALIBRATION_BATCH = 50


def _save(proto, meta: ModelMetadata, tmp: Path) -> None:
    """Stamp the metadata, check, and save as one self-contained file (no .onnx.data beside it)."""
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()
    proto.producer_name = "mnist-edge"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:  # onnx.checker.ValidationError and shape-inference errors
        raise ExportError(f"{tmp}: the exported ONNX graph fails onnx.checker ({e})") from None
    onnx.save_model(proto, str(tmp), save_as_external_data=False)


def export_fp32(job: ExportJob, fmt: Format, tmp: Path) -> ModelMetadata:
    """Input `input` [batch, 1, 28, 28] with a dynamic batch, output `logits` [batch, C]."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with quiet(stdout=True), torch.no_grad():
        program = torch.onnx.export(
            job.model, (example_input(),), dynamo=True, opset_version=ONNX_OPSET,
            input_names=["input"], output_names=["logits"], dynamic_shapes=({0: batch},),
            external_data=False, optimize=True, verbose=False,
        )
    _save(program.model_proto, job.metadata, tmp)
    return job.metadata


def _calibration_reader(images: np.ndarray, input_name: str):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter([{input_name: images[i:i + CALIBRATION_BATCH]}
                             for i in range(0, len(images), CALIBRATION_BATCH)])

        def get_next(self):
            return next(self._it, None)

    return Reader()


def export_int8(job: ExportJob, fmt: Format, tmp: Path) -> ModelMetadata:
    """ONNX Runtime quantization of the verified fp32 ONNX model: static QDQ (default) or dynamic."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    mode = job.settings.quantize_mode
    if mode not in QUANTIZE_MODES:
        raise ExportError(f"unknown quantize mode {mode!r} ({' or '.join(QUANTIZE_MODES)})")
    with tempfile.TemporaryDirectory(prefix="mnist-edge-quant-") as work, quiet(stdout=True):
        pre, q = Path(work) / "pre.onnx", Path(work) / "int8.onnx"
        # ONNX Runtime's recommended pre-processing: symbolic shape inference + graph optimisation
        # (folds BatchNorm into Conv, so the int8 convolution sees the final weights).
        quant_pre_process(str(job.sources[fmt.source]), str(pre), skip_symbolic_shape=False)
        if mode == "dynamic":
            quantize_dynamic(str(pre), str(q), op_types_to_quantize=DYNAMIC_OP_TYPES,
                             weight_type=QuantType.QInt8, per_channel=False)
            how = f"onnxruntime dynamic int8 ({'/'.join(DYNAMIC_OP_TYPES)} only)"
        else:
            quantize_static(str(pre), str(q), _calibration_reader(job.calibration, "input"),
                            quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
            how = f"onnxruntime static QDQ int8, per-channel weights, {len(job.calibration)} calibration images"
        proto = onnx.load_model(str(q))
    meta = replace(job.metadata, quantization=how)
    _save(proto, meta, tmp)
    return meta
