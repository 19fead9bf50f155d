"""The one table of model formats: name, file name, runtime family, precision.

Adding a format is a row here, a loader in runtimes.LOADERS (for a new family) and an exporter in
export.EXPORTERS; check, bench, predict and info pick it up from this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import ModelFileError


@dataclass(frozen=True)
class Format:
    name: str
    filename: str  # its name in the artifacts folder; the suffix identifies a file's format
    family: str  # which loader runs it: "pytorch", "torchscript" or "onnx"
    int8: bool = False

    @property
    def suffix(self) -> str:
        return self.filename[len("model"):]  # ".int8.onnx", ".onnx", ...


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("pytorch", "model.pth", "pytorch"),
        Format("torchscript", "model.ts", "torchscript"),
        Format("torchscript-int8", "model.int8.ts", "torchscript", int8=True),
        Format("onnx", "model.onnx", "onnx"),
        Format("onnx-int8", "model.int8.onnx", "onnx", int8=True),
    )
}
EXPORTED = [f for f in FORMATS.values() if f.family != "pytorch"]  # what `export` can write


def format_of(path: str | Path) -> Format:
    """The format of a model file, from its name (longest matching suffix wins)."""
    name = Path(path).name.lower()
    for fmt in sorted(FORMATS.values(), key=lambda f: -len(f.suffix)):
        if name.endswith(fmt.suffix):
            return fmt
    for fmt in FORMATS.values():  # any other stem with a known extension, e.g. digits.onnx
        if name.endswith("." + fmt.filename.rsplit(".", 1)[1]):
            return fmt
    known = ", ".join(sorted({"." + f.filename.rsplit(".", 1)[1] for f in FORMATS.values()}))
    raise ModelFileError(f"{path}: unknown model format (expected one of {known})")
