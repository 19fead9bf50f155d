"""An Int8Recipe applied to an fp32 ONNX model with ONNX Runtime's quantization (onnx and onnxruntime, no torch).

`export --quantize` applies the default recipe through this module; `tune` applies many.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from mnist_edge.core.errors import ExportError
from mnist_edge.core.metadata import METADATA_KEY, ModelMetadata
from mnist_edge.core.quiet import quiet
from mnist_edge.core.settings import Int8Recipe

CALIBRATION_BATCH = 50
LAYER_OPS = ("Conv", "Gemm", "MatMul")  # the layers a recipe quantizes (or leaves in fp32 by name)


def save(proto, meta: ModelMetadata, tmp: Path) -> None:
    """Stamp the metadata, drop the exporter's per-node notes, check, and save as one self-contained file
    (no .onnx.data beside it)."""
    import onnx

    # torch.onnx's notes on every node (its stack trace with this machine's paths, the FX node, the
    # module path): debugging aids of the export, about 1 KB a node, 8% of the default int8 file
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()
    proto.producer_name = "mnist-edge"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:  # onnx.checker.ValidationError and shape-inference errors
        raise ExportError(f"{tmp}: the exported ONNX graph fails onnx.checker ({e})") from None
    onnx.save_model(proto, str(tmp), save_as_external_data=False)


def calibration_reader(images: np.ndarray, input_name: str):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter([{input_name: images[i:i + CALIBRATION_BATCH]}
                             for i in range(0, len(images), CALIBRATION_BATCH)])

        def get_next(self):
            return next(self._it, None)

    return Reader()


def preprocess(src: Path, dest: Path) -> None:
    """ONNX Runtime's recommended pre-processing: symbolic shape inference + graph optimisation (folds
    BatchNorm into Conv, so the int8 convolution sees the final weights). Node names stay the fp32 graph's."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with quiet(stdout=True):
        quant_pre_process(str(src), str(dest), skip_symbolic_shape=False)


def layer_names(path: Path) -> list[str]:
    """The Conv/Gemm/MatMul node names of an fp32 graph: what a recipe's `exclude` names."""
    import onnx

    return [n.name for n in onnx.load_model(str(path)).graph.node if n.op_type in LAYER_OPS]


def quantize(pre: Path, dest: Path, calibration: np.ndarray, recipe: Int8Recipe) -> None:
    """quantize_static of the pre-processed fp32 model `pre` into `dest` (no mnist-edge metadata yet)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    with quiet(stdout=True):
        quantize_static(
            str(pre), str(dest), calibration_reader(calibration, "input"),
            quant_format=QuantFormat.QDQ if recipe.form == "qdq" else QuantFormat.QOperator,
            per_channel=recipe.per_channel, weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8 if recipe.activations == "uint8" else QuantType.QInt8,
            calibrate_method=methods[recipe.calibration], nodes_to_exclude=list(recipe.exclude),
            reduce_range=recipe.reduce_range,
            extra_options={"ActivationSymmetric": recipe.symmetric_activations})


def metadata_of(meta: ModelMetadata, recipe: Int8Recipe, calibration_images: int) -> ModelMetadata:
    recipe = replace(recipe, calibration_images=calibration_images)
    return replace(meta, quantization=recipe.describe(), int8_recipe=recipe.to_dict())


def write(src: Path, tmp: Path, calibration: np.ndarray, recipe: Int8Recipe, meta: ModelMetadata,
          pre: Path | None = None) -> ModelMetadata:
    """The int8 file of the fp32 ONNX model `src` made by `recipe`, with its metadata, at `tmp`."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="mnist-edge-quant-") as work:
        if pre is None:
            pre = Path(work) / "pre.onnx"
            preprocess(src, pre)
        q = Path(work) / "int8.onnx"
        quantize(pre, q, calibration, recipe)
        proto = onnx.load_model(str(q))
    out = metadata_of(meta, recipe, len(calibration))
    save(proto, out, tmp)
    return out


def restamp(src: Path, dest: Path, meta: ModelMetadata) -> None:
    """A copy of the ONNX file `src` at `dest` with other metadata (a recipe's session options)."""
    import onnx

    save(onnx.load_model(str(src)), meta, dest)
