"""The one source of truth for datasets, preprocessing constants and the metadata every model carries.

Training, export, check, bench, predict and serve all read mean/std, input shape and class names
from here (for a new model) or from the model's own saved metadata (for an existing one).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from mnist_edge import __version__
from mnist_edge.core.errors import ModelFileError

INPUT_SHAPE = (1, 28, 28)  # (channels, height, width) of one model input
NUM_CLASSES = 10
METADATA_KEY = "mnist_edge.metadata"  # ONNX metadata_props key / TorchScript extra file name
FORMAT_TAG = "mnist-edge-model"  # marks metadata (and checkpoints) written by this tool


@dataclass(frozen=True)
class Augmentation:
    """A dataset's training augmentation (with --augment): a random affine map and flip per image."""

    rotation_deg: float = 0.0  # uniform in +-rotation_deg
    scale: float = 0.0  # uniform in 1 +- scale
    shift: float = 0.0  # uniform in +-shift of the half-width (0.12: +-1.7 px of 28)
    hflip: float = 0.0  # probability of a left-right mirror image

    @property
    def is_identity(self) -> bool:
        return not (self.rotation_deg or self.scale or self.shift or self.hflip)


# Handwriting: digits are written slanted, sized and placed differently, and a mirrored digit is another
# symbol (or none).
DIGITS_AUGMENTATION = Augmentation(rotation_deg=10, scale=0.1, shift=0.12)
# Clothes: none. Fashion-MNIST's images are centred and upright; MNIST's rotation/scale/shift cost it
# (6,000 images x 1 / x 3 epochs, test accuracy: none 78.06% / 83.22%, mirror 77.42 / 82.43, shift
# 76.76 / 81.15, shift + mirror 76.04 / 80.59, MNIST's 75.62 / 80.27).
CLOTHES_AUGMENTATION = Augmentation()


@dataclass(frozen=True)
class DatasetSpec:
    """A 28x28, 10-class IDX dataset: where torchvision keeps it, how to normalise and augment it."""

    name: str
    torchvision_class: str  # torchvision.datasets class; also its folder name, DIR/<class>/raw
    class_names: tuple[str, ...]
    mean: float  # of the training pixels scaled to [0, 1]
    std: float
    augmentation: Augmentation = DIGITS_AUGMENTATION


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("mnist", "MNIST", tuple(str(d) for d in range(10)), 0.1307, 0.3081),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist",
        "FashionMNIST",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        0.2860,
        0.3530,
        CLOTHES_AUGMENTATION,
    ),
}


@dataclass
class ModelMetadata:
    """What travels inside every checkpoint and exported model, so any of them can be used alone."""

    arch: str
    arch_args: dict = field(default_factory=dict)
    dataset: str = "mnist"
    class_names: list[str] = field(default_factory=lambda: list(DATASETS["mnist"].class_names))
    mean: float = DATASETS["mnist"].mean
    std: float = DATASETS["mnist"].std
    input_shape: list[int] = field(default_factory=lambda: list(INPUT_SHAPE))
    test_acc: float | None = None  # fraction 0..1 of the source PyTorch model
    test_loss: float | None = None
    epochs: int = 0
    seed: int | None = None
    versions: dict = field(default_factory=dict)
    quantization: str | None = None  # how an int8 export was made; None for fp32 models
    int8_recipe: dict | None = None  # ONNX int8: the Int8Recipe (core.settings) it was made and is run with
    tool: str = FORMAT_TAG
    mnist_edge_version: str = __version__

    @classmethod
    def for_dataset(cls, arch: str, arch_args: dict, dataset: str) -> ModelMetadata:
        spec = DATASETS[dataset]
        return cls(arch=arch, arch_args=dict(arch_args), dataset=dataset,
                   class_names=list(spec.class_names), mean=spec.mean, std=spec.std)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: object, source: str = "model") -> ModelMetadata:
        """Rebuild from a dict, refusing anything that was not written by mnist-edge."""
        if not isinstance(d, dict) or d.get("tool") != FORMAT_TAG:
            raise ModelFileError(f"{source}: not an mnist-edge model (no mnist-edge metadata)")
        known = {f.name for f in fields(cls)}
        try:
            meta = cls(**{k: v for k, v in d.items() if k in known})
            meta.mean, meta.std = float(meta.mean), float(meta.std)
        except (TypeError, ValueError) as e:
            raise ModelFileError(f"{source}: corrupt mnist-edge metadata ({e})") from None
        if len(meta.class_names) < 2 or not meta.std > 0:
            raise ModelFileError(f"{source}: corrupt mnist-edge metadata (classes or std)")
        return meta

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "model") -> ModelMetadata:
        try:
            d = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            raise ModelFileError(f"{source}: corrupt mnist-edge metadata (not JSON)") from None
        return cls.from_dict(d, source)

    def normalize(self, images: np.ndarray) -> np.ndarray:
        """uint8 pixels (N, 28, 28) or (N, 1, 28, 28), 0..255 -> the float32 model input (N, 1, 28, 28)."""
        return normalize(images, self.mean, self.std)


def normalize(images: np.ndarray, mean: float, std: float) -> np.ndarray:
    """uint8 pixels 0..255 -> float32 (N, 1, H, W), scaled to [0, 1] then standardised."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[:, None]
    return ((x / np.float32(255.0)) - np.float32(mean)) / np.float32(std)


def package_versions(installed: bool = False) -> dict:
    """Versions of the packages that make or run models (core.deps): those imported in this process, or
    (installed=True) every installed one, read from the package metadata without importing anything."""
    import sys
    from importlib import metadata

    from mnist_edge.core.deps import model_distributions

    versions = {}
    for dist in model_distributions():
        if installed:
            try:
                versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
        else:
            version = getattr(sys.modules.get(dist.replace("-", "_")), "__version__", None)
            if version:
                versions[dist] = str(version)  # TorchVersion is not a plain str
    return versions


def runtime_versions() -> dict:
    """Versions of what produced a model, recorded in its metadata."""
    import platform

    return {"mnist_edge": __version__, "python": platform.python_version(), **package_versions()}
