"""`mnist-edge export`: one small exporter per format, each verified before it replaces a file.

Every file is written under a temporary name in the output folder, loaded back through its runtime,
held to the parity tolerances against the PyTorch checkpoint on the test set, and only then renamed
into place. A failed export leaves any earlier good file untouched.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .deps import require
from .deps import torch as _torch
from .errors import ExportError, MnistEdgeError
from .fileio import atomic_path
from .formats import FORMATS, Format
from .metadata import METADATA_KEY, ModelMetadata

ONNX_OPSET = 18
EXPORT_BATCH = 2  # the torch 2.14 exporter fixes the batch dimension when traced with a batch of 1
QUANTIZE_MODES = ("static", "dynamic")
DEFAULT_QUANTIZE_MODE = "static"  # fastest here without losing accuracy: see README, "Quantization"
DEFAULT_CALIBRATION_SAMPLES = 500
# quantize_dynamic on Conv makes ConvInteger (4x slower than fp32 here, missing from some execution
# providers): dynamic mode quantizes the matrix products only.
DYNAMIC_OP_TYPES = ["MatMul", "Gemm"]


@dataclass
class ExportJob:
    """What an exporter needs: the model, its metadata and, for static int8, calibration images."""

    model: object  # torch.nn.Module in eval mode
    metadata: ModelMetadata
    out: Path
    quantize_mode: str = DEFAULT_QUANTIZE_MODE
    calibration: np.ndarray | None = None  # float32 (N, 1, 28, 28), normalised


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' deprecation warnings and progress prints: not actionable for users."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _example(torch, batch: int = EXPORT_BATCH):
    return torch.zeros(batch, 1, 28, 28)


# --- TorchScript ----------------------------------------------------------------------------------

def _save_torchscript(torch, model, meta: ModelMetadata, tmp: Path) -> None:
    with _quiet(), torch.no_grad():
        scripted = torch.jit.trace(model, _example(torch))
        scripted = torch.jit.freeze(scripted.eval())  # folds BatchNorm into the convolutions
        torch.jit.save(scripted, str(tmp), _extra_files={METADATA_KEY: meta.to_json()})


def export_torchscript(job: ExportJob, tmp: Path) -> ModelMetadata:
    _save_torchscript(_torch(), job.model, job.metadata, tmp)
    return job.metadata


def export_torchscript_int8(job: ExportJob, tmp: Path) -> ModelMetadata:
    """Dynamic int8 quantization of the Linear layers with torch.ao.quantization."""
    torch = _torch()
    with _quiet():
        quant = getattr(getattr(torch, "ao", None), "quantization", None)
        if quant is None or not hasattr(quant, "quantize_dynamic"):
            raise ExportError(f"torch {torch.__version__} has no torch.ao.quantization.quantize_dynamic: "
                              "TorchScript int8 needs a torch release that still ships it (<= 2.14)")
        import copy

        qmodel = quant.quantize_dynamic(copy.deepcopy(job.model), {torch.nn.Linear}, dtype=torch.qint8)
    meta = replace(job.metadata, quantization="torch dynamic int8 (Linear layers)")
    _save_torchscript(torch, qmodel, meta, tmp)
    return meta


# --- ONNX -----------------------------------------------------------------------------------------

def _set_metadata(model_proto, meta: ModelMetadata) -> None:
    del model_proto.metadata_props[:]
    entry = model_proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()
    model_proto.producer_name = "mnist-edge"


def _save_onnx_proto(onnx, proto, meta: ModelMetadata, tmp: Path) -> None:
    """Stamp metadata, check, and save as one self-contained file (no .onnx.data beside it)."""
    _set_metadata(proto, meta)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:  # onnx.checker.ValidationError and shape-inference errors
        raise ExportError(f"{tmp}: the exported ONNX graph fails onnx.checker ({e})") from None
    onnx.save_model(proto, str(tmp), save_as_external_data=False)


def export_onnx(job: ExportJob, tmp: Path) -> ModelMetadata:
    """Opset 18, input `input` [batch, 1, 28, 28] with a dynamic batch, output `logits` [batch, C]."""
    torch = _torch()
    onnx = require("onnx")
    batch = torch.export.Dim("batch", min=1, max=65536)
    with _quiet(), torch.no_grad():
        program = torch.onnx.export(
            job.model, (_example(torch),), dynamo=True, opset_version=ONNX_OPSET,
            input_names=["input"], output_names=["logits"], dynamic_shapes=({0: batch},),
            external_data=False, optimize=True, verbose=False,
        )
        proto = program.model_proto
    _save_onnx_proto(onnx, proto, job.metadata, tmp)
    return job.metadata


def _calibration_reader(images: np.ndarray, input_name: str, batch: int = 50):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter([{input_name: images[i:i + batch]} for i in range(0, len(images), batch)])

        def get_next(self):
            return next(self._it, None)

    return Reader()


def export_onnx_int8(job: ExportJob, tmp: Path) -> ModelMetadata:
    """ONNX Runtime quantization of the fp32 ONNX model: static QDQ (default) or dynamic."""
    onnx = require("onnx")
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32 = job.out / FORMATS["onnx"].filename
    if not fp32.is_file():
        raise ExportError(f"{fp32}: int8 ONNX is made from the fp32 ONNX model: export --format onnx first")
    with tempfile.TemporaryDirectory(prefix="mnist-edge-quant-") as work, _quiet():
        work = Path(work)
        pre, q = work / "pre.onnx", work / "int8.onnx"
        # ONNX Runtime's recommended pre-processing: symbolic shape inference + graph optimisation
        # (folds BatchNorm into Conv, so the int8 convolution sees the final weights).
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=False)
        if job.quantize_mode == "dynamic":
            quantize_dynamic(str(pre), str(q), op_types_to_quantize=DYNAMIC_OP_TYPES,
                             weight_type=QuantType.QInt8, per_channel=False)
            how = f"onnxruntime dynamic int8 ({'/'.join(DYNAMIC_OP_TYPES)} only)"
        elif job.quantize_mode == "static":
            if job.calibration is None or not len(job.calibration):
                raise ExportError("static quantization needs calibration images")
            quantize_static(str(pre), str(q), _calibration_reader(job.calibration, "input"),
                            quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
            how = f"onnxruntime static QDQ int8, per-channel weights, {len(job.calibration)} calibration images"
        else:
            raise ExportError(f"unknown quantize mode {job.quantize_mode!r} ({' or '.join(QUANTIZE_MODES)})")
        proto = onnx.load_model(str(q))
    meta = replace(job.metadata, quantization=how)
    _save_onnx_proto(onnx, proto, meta, tmp)
    return meta


EXPORTERS: dict[str, Callable[[ExportJob, Path], ModelMetadata]] = {
    "torchscript": export_torchscript,
    "torchscript-int8": export_torchscript_int8,
    "onnx": export_onnx,
    "onnx-int8": export_onnx_int8,
}


def formats_to_write(fmt: str, quantize: bool) -> list[Format]:
    """--format torchscript|onnx|all [--quantize] -> the formats, fp32 before its int8 twin."""
    families = ["torchscript", "onnx"] if fmt == "all" else [fmt]
    if any(f not in ("torchscript", "onnx") for f in families):
        raise MnistEdgeError(f"unknown format {fmt!r} (torchscript, onnx or all)")
    names = []
    for fam in families:
        names.append(fam)
        if quantize:
            names.append(f"{fam}-int8")
    return [FORMATS[n] for n in names]


@dataclass
class Exported:
    format: Format
    path: Path
    size_bytes: int
    parity: object  # parity.FormatResult


def export_one(job: ExportJob, fmt: Format, verify: Callable[[Path, Format], object]) -> Exported:
    """Write one format to a temporary file, verify it with `verify`, then move it into place."""
    dest = job.out / fmt.filename
    with atomic_path(dest, suffix=fmt.suffix) as tmp:
        try:
            EXPORTERS[fmt.name](job, tmp)
        except MnistEdgeError:
            raise
        except Exception as e:  # the exporters' own failures: one line, never a traceback
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise ExportError(f"{dest}: {fmt.name} export failed ({first})") from None
        result = verify(tmp, fmt)
    return Exported(fmt, dest, dest.stat().st_size, result)


def export_models(checkpoint_path: Path, out: Path, fmt: str = "all", quantize: bool = False,
                  quantize_mode: str = DEFAULT_QUANTIZE_MODE,
                  calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
                  data_dir: str | None = None, tol=None,
                  on_done: Callable[[Exported], None] | None = None) -> list[Exported]:
    """Export the checkpoint to each requested format, verifying each against it on the test set."""
    from . import data
    from .errors import ParityError
    from .parity import compare, reference
    from .runtimes import LOADERS, load_runtime

    formats = formats_to_write(fmt, quantize)
    if quantize_mode not in QUANTIZE_MODES:
        raise MnistEdgeError(f"unknown quantize mode {quantize_mode!r} ({' or '.join(QUANTIZE_MODES)})")
    ref_rt = load_runtime(checkpoint_path)
    meta = ref_rt.metadata
    if quantize and quantize_mode == "static" and any(f.family == "onnx" for f in formats):
        train_split, test_split = data.load_dataset(data_dir, meta.dataset)
        pick = np.random.default_rng(0).choice(len(train_split), min(calibration_samples, len(train_split)),
                                               replace=False)
        calibration = meta.normalize(train_split.images[np.sort(pick)])
    else:
        test_split, calibration = data.load_test_split(data_dir, meta.dataset), None
    ref = reference(ref_rt, test_split)
    job = ExportJob(ref_rt.model, meta, Path(out), quantize_mode, calibration)

    def verify(tmp: Path, f: Format):
        rt = LOADERS[f.family](tmp, f)
        result = compare(ref, rt, f.int8, tol, name=f.name)
        if not result.passed:
            raise ParityError(f"{out / f.filename}: not written, the export fails parity: "
                              + "; ".join(result.failures))
        return result

    done = []
    for f in formats:
        done.append(export_one(job, f, verify))
        if on_done:
            on_done(done[-1])
    return done
