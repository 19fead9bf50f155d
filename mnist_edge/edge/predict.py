"""`mnist-edge predict`: digits from any images a person has, through the model's own metadata.

With an ONNX model this path imports numpy, Pillow and onnxruntime only, never torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from mnist_edge.core.errors import ImageError, ModelFileError
from mnist_edge.core.formats import Runtime, load_runtime, predict_order, present
from mnist_edge.core.metadata import INPUT_SHAPE
from mnist_edge.core.settings import DEFAULT_ARTIFACTS

STDIN = "-"
CHUNK = 64  # images preprocessed and run together: amortises the runtime call on big folders
SHIPPED_MODEL = "model.onnx"  # inside mnist_edge/edge/assets, with model.json (its recorded metrics)


def shipped_model_path() -> Path:
    return Path(str(resources.files("mnist_edge.edge") / "assets" / SHIPPED_MODEL))


def default_model(artifacts: str | os.PathLike = DEFAULT_ARTIFACTS) -> Path:
    """The best exported model in `artifacts` (torch-free, fp32 first), else the model shipped in the package."""
    found = dict(present(artifacts))
    for fmt in predict_order():
        if fmt in found:
            return found[fmt]
    p = shipped_model_path()
    if not p.is_file():
        raise ModelFileError(f"{p}: the shipped default model is missing from this installation")
    return p


@dataclass
class Prediction:
    path: str
    digit: int  # class index
    label: str  # class name; for MNIST the digit as text
    confidence: float
    probabilities: list[float]

    def to_json(self) -> dict:
        return asdict(self)

    def top(self, k: int, class_names: list[str]) -> list[tuple[str, float]]:
        order = np.argsort(self.probabilities)[::-1][:k]
        return [(class_names[i], self.probabilities[i]) for i in order]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _read_source(src: str, stdin: object) -> tuple[object, str]:
    """(what preprocess reads, the name messages use)."""
    if src == STDIN:
        data = stdin.read() if stdin is not None else b""
        return data, "<stdin>"
    return src, src


def predict_arrays(rt: Runtime, images: np.ndarray, names: list[str]) -> list[Prediction]:
    """Predictions for uint8 (N, 28, 28) images already in MNIST form."""
    if not len(images):
        return []
    probs = softmax(rt.run(rt.metadata.normalize(images)))
    classes = rt.metadata.class_names
    out = []
    for name, p in zip(names, probs, strict=True):
        probs6 = [round(float(v), 6) for v in p]  # 6 decimals: enough, and stable JSON
        i = int(p.argmax())
        out.append(Prediction(name, i, classes[i], probs6[i], probs6))
    return out


def predict_sources(rt: Runtime, sources: Iterable[str], stdin: object = None
                    ) -> Iterator[Prediction | ImageError]:
    """For each source, in order, a Prediction or the ImageError that stopped it."""
    from mnist_edge.edge.preprocess import preprocess

    pending: list[tuple[int, str, np.ndarray | ImageError]] = []

    def flush() -> Iterator[Prediction | ImageError]:
        ok = [(n, a) for _, n, a in pending if not isinstance(a, ImageError)]
        images = np.stack([a for _, a in ok]) if ok else np.zeros((0, *INPUT_SHAPE[1:]), np.uint8)
        preds = iter(predict_arrays(rt, images, [n for n, _ in ok]))
        for _, _, a in pending:
            yield a if isinstance(a, ImageError) else next(preds)
        pending.clear()

    for i, src in enumerate(sources):
        data, name = _read_source(src, stdin)
        try:
            pending.append((i, src, preprocess(data, name=name)))
        except ImageError as e:
            pending.append((i, src, e))
        if len(pending) >= CHUNK:
            yield from flush()
    yield from flush()


def model_for(model: str | os.PathLike | None, artifacts: str | os.PathLike = DEFAULT_ARTIFACTS) -> Runtime:
    """The runtime of --model, or of the default model."""
    return load_runtime(model if model else default_model(artifacts))
