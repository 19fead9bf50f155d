"""Late, guarded imports of the heavy optional dependencies (torch & co. live in the `train` extra)."""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

from .errors import MissingExtraError

# Which extra provides which module, for the one-line hint.
_EXTRA_OF = {
    "torch": "train",
    "torchvision": "train",
    "onnx": "train",
    "onnxscript": "train",
    "matplotlib": "train",
    "fastapi": "serve",
    "uvicorn": "serve",
    "multipart": "serve",
    "python_multipart": "serve",
}


def missing_extra(e: ImportError) -> MissingExtraError | None:
    """The one-line MissingExtraError for an ImportError of an optional dependency, else None."""
    root = (e.name or "").split(".")[0]
    if root not in _EXTRA_OF:
        return None
    extra = _EXTRA_OF[root]
    return MissingExtraError(f"this command needs {root}, which is not installed: install mnist-edge[{extra}]")


def require(module: str) -> ModuleType:
    """Import `module` or raise MissingExtraError naming the extra to install."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation noise of torch.jit / torch.ao on import
            return importlib.import_module(module)
    except ImportError as e:
        extra = _EXTRA_OF.get(module.split(".")[0], "train")
        raise MissingExtraError(
            f"this command needs {module.split('.')[0]} ({e.name or module} is not installed): "
            f"install mnist-edge[{extra}]"
        ) from None


def torch() -> ModuleType:
    """The torch module, with its thread count and warnings set the way mnist-edge wants."""
    return require("torch")
