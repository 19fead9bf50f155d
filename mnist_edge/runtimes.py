"""One small runtime per model family: load a path, run a float32 batch, return logits.

check, bench, evaluate and predict all go through `load_runtime`, so formats are compared fairly.
The ONNX runtime never imports torch: predicting with an .onnx model works without the train extra.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import ModelFileError
from .formats import Format, format_of
from .metadata import METADATA_KEY, ModelMetadata


class Runtime(Protocol):
    format: str
    path: Path
    metadata: ModelMetadata

    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, 1, 28, 28), already normalised -> float32 logits (N, num_classes)."""
        ...


def _check_file(path: Path, fmt: Format) -> None:
    if not path.exists():
        if fmt.family == "pytorch":
            raise ModelFileError(f"{path}: no such checkpoint (train one with `mnist-edge train`)")
        raise ModelFileError(f"{path}: no such model file")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder, not a model file")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path}: empty file, not a model")


@dataclass
class TorchRuntime:
    """Eager PyTorch from a model.pth checkpoint (the reference every other format is held to)."""

    format: str
    path: Path
    metadata: ModelMetadata
    model: object
    device: str = "cpu"

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
            return self.model(x).float().cpu().numpy()


def load_pytorch(path: Path, fmt: Format, threads: int | None = None) -> TorchRuntime:
    from .checkpoint import load_model

    _set_torch_threads(threads)
    model, meta = load_model(path)
    return TorchRuntime(fmt.name, path, meta, model)


def load_torchscript(path: Path, fmt: Format, threads: int | None = None) -> TorchRuntime:
    from .deps import torch as _torch

    torch = _torch()
    _set_torch_threads(threads)
    extra = {METADATA_KEY: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit is deprecated in recent torch; still works
            model = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as e:  # torch raises RuntimeError/ValueError/zip errors for a bad archive
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"{path}: corrupt or not a TorchScript model ({first})") from None
    if not extra[METADATA_KEY]:
        raise ModelFileError(f"{path}: not an mnist-edge model (no mnist-edge metadata)")
    meta = ModelMetadata.from_json(extra[METADATA_KEY], str(path))
    model.eval()
    return TorchRuntime(fmt.name, path, meta, model)


def _set_torch_threads(threads: int | None) -> None:
    if threads:
        from .deps import torch as _torch

        _torch().set_num_threads(threads)


@dataclass
class OnnxRuntime:
    """An ONNX Runtime CPU session (torch-free)."""

    format: str
    path: Path
    metadata: ModelMetadata
    session: object
    input_name: str

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        return self.session.run(None, {self.input_name: x})[0]


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """A CPU InferenceSession with mnist-edge's settings (also used by exports to verify files)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: no optimizer chatter in the user's terminal
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def load_onnx(path: Path, fmt: Format, threads: int | None = None) -> OnnxRuntime:
    try:
        sess = onnx_session(path, threads)
    except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"{path}: corrupt or not an ONNX model ({first})") from None
    props = sess.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise ModelFileError(f"{path}: not an mnist-edge model (no mnist-edge metadata)")
    meta = ModelMetadata.from_json(props[METADATA_KEY], str(path))
    inputs = sess.get_inputs()
    if len(inputs) != 1 or list(inputs[0].shape[1:]) != list(meta.input_shape):
        raise ModelFileError(f"{path}: unexpected model input {[(i.name, i.shape) for i in inputs]}")
    return OnnxRuntime(fmt.name, path, meta, sess, inputs[0].name)


LOADERS = {"pytorch": load_pytorch, "torchscript": load_torchscript, "onnx": load_onnx}


def load_runtime(path: str | os.PathLike, threads: int | None = None) -> Runtime:
    """Load any supported model file, chosen by its name; errors name the file and the problem."""
    path = Path(path)
    fmt = format_of(path)
    _check_file(path, fmt)
    return LOADERS[fmt.family](path, fmt, threads)


@dataclass
class Scores:
    loss: float  # mean cross-entropy
    accuracy: float  # fraction 0..1
    logits: np.ndarray


def run_batched(rt: Runtime, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Logits for a normalised array, in batches of `batch`."""
    return np.concatenate([rt.run(x[i:i + batch]) for i in range(0, len(x), batch)])


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    z = logits.astype(np.float64)
    z = z - z.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels.astype(np.int64)].mean())


def evaluate_runtime(rt: Runtime, split, batch: int = 256) -> Scores:
    """Loss and accuracy of any runtime on a data split (uint8 images, labels)."""
    logits = run_batched(rt, rt.metadata.normalize(split.images), batch)
    return Scores(cross_entropy(logits, split.labels),
                  float((logits.argmax(1) == split.labels).mean()), logits)
