"""Optional dependencies: which pip extra brings which module, and late, guarded imports of them."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from mnist_edge.core.errors import MissingExtraError
from mnist_edge.core.quiet import quiet

# The extras of pyproject.toml and the top-level modules each one brings (for the one-line hint).
EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("torch", "torchvision", "onnx", "onnxscript", "matplotlib"),
    "serve": ("fastapi", "uvicorn", "multipart", "python_multipart"),
    "executorch": ("executorch", "torchao"),
    "openvino": ("openvino",),
    "litert": ("ai_edge_litert",),
    "tflm": ("tflite_micro", "ai_edge_litert"),
    "litert-export": ("litert_torch", "ai_edge_quantizer"),
}
EXTRA_OF = {module: extra for extra, modules in EXTRAS.items() for module in modules}


def missing_extra(e: ImportError) -> MissingExtraError | None:
    """The one-line MissingExtraError for an ImportError of an optional dependency, else None."""
    root = (e.name or "").split(".")[0]
    if root not in EXTRA_OF:
        return None
    return MissingExtraError(f"this command needs {root}, which is not installed: "
                             f"install mnist-edge[{EXTRA_OF[root]}]")


def require(module: str, extra: str | None = None) -> ModuleType:
    """Import `module` or raise MissingExtraError naming the extra to install."""
    root = module.split(".")[0]
    try:
        with quiet():  # deprecation noise of torch.jit / torch.ao on import
            return importlib.import_module(module)
    except ImportError as e:
        extra = extra or EXTRA_OF.get(root, "train")
        raise MissingExtraError(f"this command needs {root} ({e.name or module} is not installed): "
                                f"install mnist-edge[{extra}]") from None


def installed(extra: str | None) -> bool:
    """Whether an extra is installed: its first module can be found (nothing is imported)."""
    return extra is None or importlib.util.find_spec(EXTRAS[extra][0]) is not None


def torch() -> ModuleType:
    """The torch module (or one line naming the extra)."""
    return require("torch")
