"""ONNX Runtime on the CPU (torch-free): the default edge runtime, also used by exports to verify files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_edge.core.errors import ModelFileError, first_line
from mnist_edge.core.formats import Format, Runtime
from mnist_edge.core.metadata import METADATA_KEY, ModelMetadata
from mnist_edge.core.settings import GRAPH_OPTIMIZATIONS


@dataclass
class OnnxRuntime(Runtime):
    format: str
    path: Path
    metadata: ModelMetadata
    session: object  # onnxruntime.InferenceSession
    input_name: str
    engine: str | None = None  # said in reports where it is not what the format's users run (the web app's)

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        return self.session.run(None, {self.input_name: x})[0]


def session(path: str | os.PathLike, threads: int | None = None, graph_optimization: str = "all"):
    """A CPU InferenceSession with mnist-edge's settings."""
    import onnxruntime as ort

    levels = dict(zip(GRAPH_OPTIMIZATIONS, (ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                                            ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                            ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                            ort.GraphOptimizationLevel.ORT_ENABLE_ALL), strict=True))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: no optimizer chatter in the user's terminal
    opts.graph_optimization_level = levels[graph_optimization]
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _session_options(meta: ModelMetadata, threads: int | None) -> tuple[int | None, str]:
    """(threads, graph optimization): the caller's threads, else those of the int8 recipe `tune` chose."""
    recipe = meta.int8_recipe or {}
    level = recipe.get("graph_optimization", "all")
    return threads or recipe.get("threads"), level if level in GRAPH_OPTIMIZATIONS else "all"


def load(path: Path, fmt: Format, threads: int | None = None) -> OnnxRuntime:
    try:
        sess = session(path, threads)
        props = sess.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in props:
            raise ModelFileError(f"{path}: not an mnist-edge model (no mnist-edge metadata)")
        meta = ModelMetadata.from_json(props[METADATA_KEY], str(path))
        tuned = _session_options(meta, threads)
        if tuned != (threads, "all"):  # the metadata is read from a session: a second one applies its options
            sess = session(path, *tuned)
    except ModelFileError:
        raise
    except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
        raise ModelFileError(f"{path}: corrupt or not an ONNX model ({first_line(e, 160)})") from None
    inputs = sess.get_inputs()
    if len(inputs) != 1 or list(inputs[0].shape[1:]) != list(meta.input_shape):
        raise ModelFileError(f"{path}: unexpected model input {[(i.name, i.shape) for i in inputs]}")
    return OnnxRuntime(fmt.name, path, meta, sess, inputs[0].name)
