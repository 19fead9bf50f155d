"""OpenVINO IR (model.xml + model.bin) converted from a verified ONNX file: fp32, and int8 from the int8 ONNX.

The int8 IR is OpenVINO's reading of the int8 ONNX file (its QuantizeLinear/DequantizeLinear pairs
become FakeQuantize layers that the CPU plugin runs as int8): the same scales, zero points and 7-bit
weights as the ONNX Runtime, C and browser rows, calibrated once. NNCF's post-training quantization of
the fp32 IR computes as well and as fast here, but would calibrate a second, different int8 model and
add nncf (and its import of torch) to the extra. Torch-free: it only converts files.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mnist_edge.core.deps import require
from mnist_edge.core.formats import FORMATS, Format
from mnist_edge.core.metadata import ModelMetadata
from mnist_edge.core.quiet import quiet
from mnist_edge.edge.runtimes import onnx as onnx_runtime
from mnist_edge.edge.runtimes.openvino import XML_FILE, set_metadata


def export(job, fmt: Format, tmp: Path) -> ModelMetadata:
    """Write the IR of the verified ONNX file of `fmt.source` into the empty folder `tmp`."""
    ov = require("openvino", "openvino")
    src = job.sources[fmt.source]
    meta = onnx_runtime.load(src, FORMATS[fmt.source]).metadata  # what the source file itself says
    if fmt.int8:
        meta = replace(meta, quantization=f"OpenVINO IR of the int8 ONNX model: {meta.quantization}")
    # Core.read_model is OpenVINO's ONNX frontend; ov.convert_model wraps it in the `ovc` tool, which sends
    # usage telemetry unless the user has opted out
    with quiet(stdout=True):
        model = ov.Core().read_model(str(src))
    # the frontend copies the ONNX file's metadata_props under "framework": one copy of the metadata, ours
    rt_info = model.get_rt_info()
    if "framework" in rt_info:
        del rt_info["framework"]
    set_metadata(model, meta)
    # compress_to_fp16 (on by default) would store fp16 weights: fp32 IR keeps fp32 weights
    ov.save_model(model, str(tmp / XML_FILE), compress_to_fp16=False)  # and its weights, model.bin
    return meta
