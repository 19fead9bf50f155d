"""The one registry of model formats: what each format is, what it is made from and how it runs.

Every list of formats elsewhere is derived from FORMATS: the CLI's choices, what `export --format all`
writes, the order in which `predict` picks a model, which exports need calibration images, the
missing-extra hints, the batch sizes `check` and `bench` use. A row names its exporter and its loader
by dotted path ("module:function"); they are imported only when used, so this module needs nothing
beyond the standard library, and a torch-free runtime never imports torch to be found.

Adding a format: a row here, an exporter `export(job, fmt, tmp) -> ModelMetadata` (job: an ExportJob of
pytorch/exporters/job.py), a loader `load(path, fmt, threads) -> Runtime` (a class that subclasses
Runtime inherits its defaults) and, if it needs packages, one extra in pyproject.toml that the row names
(export_extra, runtime_extra). The install line, missing-extra hints, quieted warnings, recorded versions
and CLI choices derive from these (core/deps.py reads pyproject.toml).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mnist_edge.core.errors import MnistEdgeError, ModelFileError

if TYPE_CHECKING:
    import numpy as np

    from mnist_edge.core.metadata import ModelMetadata

ANY_BATCH = (1, 7, 256)  # what parity runs a format with a dynamic batch at (7: an odd size)
MAX_BATCH = 65536  # the batch axis of a dynamic-batch export goes up to here (what bench and tune accept)
INT8_ONNX = "onnx-int8"  # exact_int8 rows are held to the integer reference (quant/reference.py) of this file
DEVICE_BATCH = 10_000  # what parity hands an emulated device at once (its runtime splits it into emulator runs)


class Runtime(Protocol):
    """A loaded model of any format: float32 (N, *INPUT_SHAPE), already normalised -> float32 logits (N, C).

    A runtime class may subclass it to inherit the defaults below.
    """

    format: str
    path: Path
    metadata: ModelMetadata

    def run(self, x: np.ndarray) -> np.ndarray: ...

    def footprint(self) -> dict | None:
        """A microcontroller target's flash and RAM bytes (bench reports them); None for the others."""
        return None


class Checkpoint(Runtime, Protocol):
    """The checkpoint's runtime: what export traces (`model`) and every format is held to."""

    model: object  # torch.nn.Module in eval mode, fp32


@dataclass(frozen=True)
class Format:
    name: str
    filename: str  # in the artifacts folder; its suffix (or, for a folder, its name) identifies the format
    family: str  # `export --format FAMILY` writes the family's fp32 rows (and int8 rows with --quantize)
    loader: str  # "module:function" -> Runtime
    exporter: str | None = None  # "module:function" writing the file; None: not exported (the checkpoint)
    precision: str = "fp32"  # "fp32" or "int8": which parity bars apply
    source: str | None = None  # None: made from the checkpoint; else the format whose verified file it is made from
    calibrated: bool = False  # its exporter quantizes with calibration images from the training set
    export_extra: str | None = "train"  # the pip extra its exporter needs
    runtime_extra: str | None = None  # the pip extra its runtime needs (None: the base install)
    runtime_needs_torch: bool = False
    batch_sizes: tuple[int, ...] | None = None  # the only batch sizes its program takes; None: any
    folder: bool = False  # the "file" is a folder of several files (C sources, a firmware bundle)
    # held bit for bit to the integer reference of the int8 ONNX file (quant/reference.py) it runs or is made from
    exact_int8: bool = False
    reference: str | None = None  # also held to this sibling format's logits (an exact re-implementation)
    reference_max_abs_diff: float | None = None  # ... within this max |Δlogit| (0: bit-exact)
    reference_min_agreement: float | None = None  # ... with at least this top-1 agreement
    prerequisite: str | None = None  # "module:function" -> None, or one line on what this machine lacks to export it
    # (for a device row: to run it)
    device: str | None = None  # runs the `reference` format's file on this emulated core (not exported by itself)
    tunable: bool = False  # an ONNX Runtime int8 recipe: `tune` searches it, `check --per-layer` measures its layers
    note: str = ""  # one line for tables and `--help`

    @property
    def int8(self) -> bool:
        return self.precision == "int8"

    @property
    def suffix(self) -> str:
        return self.filename[len("model"):] if self.filename.startswith("model") else self.filename

    @property
    def check_batch_sizes(self) -> tuple[int, ...]:
        """Batch sizes parity runs this format at: every size its program takes (a device: all at once)."""
        return (DEVICE_BATCH,) if self.device else self.batch_sizes or ANY_BATCH

    def supports_batch(self, n: int) -> bool:
        return self.batch_sizes is None or n in self.batch_sizes

    def unavailable(self) -> str | None:
        """Why this format cannot be exported here (beyond pip extras), or None."""
        return resolve(self.prerequisite)() if self.prerequisite else None

    def missing_hint(self) -> str:
        if self.exporter is None and not self.device:
            return "train one with `mnist-edge train`"
        return f"export it with `mnist-edge export --format {self.family}`"

    def load(self, path: Path, threads: int | None = None) -> Runtime:
        """This format's runtime for `path`; a missing, empty or wrong-kind path is one line naming it."""
        check_model_path(path, self)
        return resolve(self.loader)(path, self, threads)


_ROWS = (
    Format("pytorch", "model.pth", "pytorch", "mnist_edge.pytorch.runtimes.eager:load_checkpoint",
           runtime_extra="train", runtime_needs_torch=True, note="eager PyTorch from the checkpoint"),
    Format("torchscript", "model.ts", "torchscript", "mnist_edge.pytorch.runtimes.torchscript:load",
           "mnist_edge.pytorch.exporters.torchscript:export_fp32", runtime_extra="train",
           runtime_needs_torch=True, note="traced and frozen TorchScript (deprecated in torch)"),
    Format("torchscript-int8", "model.int8.ts", "torchscript", "mnist_edge.pytorch.runtimes.torchscript:load",
           "mnist_edge.pytorch.exporters.torchscript:export_int8", precision="int8", runtime_extra="train",
           runtime_needs_torch=True, note="torch dynamic int8 of the Linear layers"),
    Format("onnx", "model.onnx", "onnx", "mnist_edge.edge.runtimes.onnx:load",
           "mnist_edge.pytorch.exporters.onnx:export_fp32", note="ONNX Runtime, opset 18, dynamic batch"),
    Format("onnx-int8", "model.int8.onnx", "onnx", "mnist_edge.edge.runtimes.onnx:load",
           "mnist_edge.pytorch.exporters.onnx:export_int8", precision="int8", source="onnx", calibrated=True,
           tunable=True, exact_int8=True, note="ONNX Runtime static QDQ int8 (7-bit weights: exact on every CPU)"),
    Format("openvino", "openvino", "openvino", "mnist_edge.edge.runtimes.openvino:load",
           "mnist_edge.pytorch.exporters.openvino:export", source="onnx", folder=True, export_extra="openvino",
           runtime_extra="openvino", note="OpenVINO IR (model.xml + model.bin) of the ONNX model, CPU plugin at fp32"),
    Format("openvino-int8", "openvino-int8", "openvino", "mnist_edge.edge.runtimes.openvino:load",
           "mnist_edge.pytorch.exporters.openvino:export", precision="int8", source="onnx-int8", folder=True,
           export_extra="openvino", runtime_extra="openvino", reference="onnx-int8", reference_min_agreement=0.999,
           note="OpenVINO IR of the int8 ONNX model, run by OpenVINO's int8 kernels"),
    Format("executorch", "model.pte", "executorch", "mnist_edge.pytorch.runtimes.executorch:load",
           "mnist_edge.pytorch.exporters.executorch:export_fp32", export_extra="executorch",
           runtime_extra="executorch", runtime_needs_torch=True, batch_sizes=(1,),
           note="ExecuTorch program, XNNPACK, batch 1"),
    Format("executorch-int8", "model.int8.pte", "executorch", "mnist_edge.pytorch.runtimes.executorch:load",
           "mnist_edge.pytorch.exporters.executorch:export_int8", precision="int8", calibrated=True,
           export_extra="executorch", runtime_extra="executorch", runtime_needs_torch=True, batch_sizes=(1,),
           note="ExecuTorch XNNPACK static int8 (PT2E), batch 1"),
    Format("tflite", "model.tflite", "tflite", "mnist_edge.edge.runtimes.litert:load",
           "mnist_edge.pytorch.exporters.litert:export_fp32", export_extra="litert-export", runtime_extra="litert",
           note="LiteRT (TensorFlow Lite) flatbuffer, dynamic batch"),
    Format("tflite-int8", "model.int8.tflite", "tflite", "mnist_edge.edge.runtimes.litert:load",
           "mnist_edge.pytorch.exporters.litert:export_int8", precision="int8", calibrated=True,
           export_extra="litert-export", runtime_extra="litert", batch_sizes=(1,),
           note="LiteRT full-integer int8 (PT2E), int8 in and out, batch 1"),
    Format("tflm-int8", "tflm", "tflm", "mnist_edge.edge.runtimes.tflm:load",
           "mnist_edge.pytorch.exporters.tflm:export", precision="int8", source="tflite-int8", export_extra="tflm",
           runtime_extra="tflm", batch_sizes=(1,), folder=True, reference="tflite-int8", reference_min_agreement=0.999,
           note="TensorFlow Lite Micro firmware bundle (C array, arena size), run with TFLM's kernels"),
    Format("c-int8", "c", "c", "mnist_edge.edge.runtimes.c:load", "mnist_edge.pytorch.exporters.c:export",
           precision="int8", source="onnx-int8", folder=True, exact_int8=True,
           note="plain C99 from the int8 ONNX model, no runtime, bit-exact with its integer reference"),
    # The C model's own folder, cross-compiled and run on emulated cores (QEMU): bit-exact with its host build.
    *(Format(f"c-int8@{core}", "c", "c", "mnist_edge.edge.runtimes.cortex_m:load", precision="int8", folder=True,
             reference="c-int8", reference_max_abs_diff=0.0, exact_int8=True, device=core,
             prerequisite="mnist_edge.edge.runtimes.cortex_m:toolchain_problem",
             note=f"the C model on an emulated {board} (QEMU), bit-exact with its host build")
      # the Cortex-M0 runs ~4x the M4's instructions (Thumb-1, float in software) but QEMU runs them faster:
      # 1,000 default-model images take 1.6x the M4's emulator time, so check runs it on all 10,000 as well
      for core, board in (("cortex-m4", "Cortex-M4 (mps2-an386)"), ("cortex-m7", "Cortex-M7 (mps2-an500)"),
                          ("cortex-m55", "Cortex-M55 (mps3-an547)"), ("cortex-m0", "Cortex-M0 (BBC micro:bit)"))),
    # The browser app: the verified ONNX file, run by onnxruntime-web; `check` runs that same file with
    # onnxruntime-web's wasm in Node where node is installed (else with Python's ONNX Runtime, and says so).
    Format("web", "web", "web", "mnist_edge.edge.runtimes.web:load", "mnist_edge.pytorch.exporters.web:export",
           precision="int8", source="onnx-int8", folder=True, exact_int8=True,
           prerequisite="mnist_edge.edge.web:vendoring_problem",
           note="static offline browser app (onnxruntime-web) with the int8 ONNX model"),
    Format("web-fp32", "web-fp32", "web-fp32", "mnist_edge.edge.runtimes.web:load",
           "mnist_edge.pytorch.exporters.web:export", source="onnx", folder=True,
           prerequisite="mnist_edge.edge.web:vendoring_problem",
           note="the browser app with the fp32 ONNX model"),
)

FORMATS: dict[str, Format] = {f.name: f for f in _ROWS}
CHECKPOINT = next(f.name for f in _ROWS if f.exporter is None)  # the reference every exported format is held to
# bench's speed-ups are against the first fp32 row of the base install (ONNX Runtime): present in every run
SPEED_REFERENCE = next(f.name for f in _ROWS if f.exporter and not f.int8 and f.runtime_extra is None)


def register(fmt: Format) -> Callable[[], None]:
    """Add a row (a plugin, or a test's toy format); returns the function that removes it again."""
    if fmt.name in FORMATS:
        raise ValueError(f"format {fmt.name!r} is registered already")
    FORMATS[fmt.name] = fmt
    return lambda: FORMATS.pop(fmt.name, None)


def resolve(dotted: str) -> Callable:
    """'package.module:function' -> the function, imported now."""
    module, _, attr = dotted.partition(":")
    return getattr(importlib.import_module(module), attr)


def exportable() -> list[Format]:
    return [f for f in FORMATS.values() if f.exporter]


def families() -> list[str]:
    """Export families in registry order: the values of `export --format`."""
    return list(dict.fromkeys(f.family for f in exportable()))


def formats_to_write(family: str, quantize: bool) -> list[Format]:
    """`--format FAMILY|all [--quantize]` -> the formats to write, each after the formats it is made from.

    A family's fp32 rows always; its int8 rows with --quantize, or when it has only int8 rows (a
    format that exists only as int8, asked for by name). `all` never adds an int8-only family
    without --quantize.
    """
    known = families()
    if family != "all" and family not in known:
        raise MnistEdgeError(f"unknown format {family!r} (one of {', '.join(known)} or all)")
    picked = []
    for fam in known if family == "all" else [family]:
        rows = [f for f in exportable() if f.family == fam]
        int8_only = all(f.int8 for f in rows)
        picked += [f for f in rows if not f.int8 or quantize or (int8_only and family != "all")]
    return with_sources(picked)


def with_sources(formats: Iterable[Format]) -> list[Format]:
    """The formats plus, before each, the exported formats it is made from (each once, in order)."""
    out: list[Format] = []

    def add(f: Format) -> None:
        if f.source and FORMATS[f.source].exporter:
            add(FORMATS[f.source])
        if f not in out:
            out.append(f)

    for f in formats:
        add(f)
    return out


def format_of(path: str | os.PathLike) -> Format:
    """The format of a model file (or folder), from its name: the longest matching suffix wins."""
    p = Path(path)
    name = p.name.lower()
    for fmt in FORMATS.values():  # a folder format is known by its own name
        if fmt.folder and name == fmt.filename:
            return fmt
    files = [f for f in FORMATS.values() if not f.folder]
    for fmt in sorted(files, key=lambda f: -len(f.suffix)):
        if name.endswith(fmt.suffix):
            return fmt
    for fmt in files:  # any other stem with a known extension, e.g. digits.onnx
        if name.endswith("." + fmt.filename.rsplit(".", 1)[1]):
            return fmt
    known = ", ".join(sorted({"." + f.filename.rsplit(".", 1)[1] for f in files}))
    raise ModelFileError(f"{path}: unknown model format (expected one of {known})")


def present(folder: str | os.PathLike, names: Iterable[str] | None = None) -> list[tuple[Format, Path]]:
    """(format, path) of the models found in a folder, in registry order; `names` limits the formats."""
    folder = Path(folder)
    wanted = None if names is None else set(names)
    found = []
    for f in FORMATS.values():
        p = folder / f.filename
        if (wanted is None or f.name in wanted) and (p.is_dir() if f.folder else p.is_file()):
            found.append((f, p))
    return found


def exported_present(folder: str | os.PathLike) -> list[tuple[Format, Path]]:
    """The exported models in a folder (everything but the checkpoint), and the devices that run them."""
    return [(f, p) for f, p in present(folder) if f.exporter or f.device]


def tunable() -> list[Format]:
    """The int8 formats `tune` searches recipes for, in registry order."""
    return [f for f in FORMATS.values() if f.tunable]


def predict_order() -> list[Format]:
    """Which model `predict` takes from an artifacts folder: torch-free rows, fp32 before int8, in row order."""
    edge = [f for f in FORMATS.values() if not f.runtime_needs_torch and f.exporter]
    return [f for f in edge if not f.int8] + [f for f in edge if f.int8]


def load_runtime(path: str | os.PathLike, threads: int | None = None) -> Runtime:
    """Load any supported model file, chosen by its name; errors name the file and the problem."""
    path = Path(path)
    return format_of(path).load(path, threads)


def load_checkpoint(path: str | os.PathLike, threads: int | None = None) -> Checkpoint:
    """The checkpoint at `path` (what export starts from); anything else is one line naming the file.

    A file named as another format (model.onnx) is refused by its name; any other name is read as a
    checkpoint, whose loader says what is wrong with it (corrupt, foreign, refused).
    """
    path = Path(path)
    try:
        fmt = format_of(path)
    except ModelFileError:
        fmt = FORMATS[CHECKPOINT]
    if fmt.name != CHECKPOINT and path.exists():
        raise ModelFileError(f"{path}: an exported model ({fmt.name}), not a checkpoint "
                             f"(export reads the {FORMATS[CHECKPOINT].filename} that `mnist-edge train` writes)")
    return FORMATS[CHECKPOINT].load(path, threads)


def check_model_path(path: Path, fmt: Format) -> None:
    """A missing, empty or wrong-kind path: one line naming it."""
    what = "checkpoint" if fmt.exporter is None and not fmt.device else "model file"
    if not path.exists():
        raise ModelFileError(f"{path}: no such {what} ({fmt.missing_hint()})")
    if fmt.folder:
        if not path.is_dir():
            raise ModelFileError(f"{path}: not a folder ({fmt.name} models are folders)")
        return
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder, not a {what}")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path}: empty file, not a {what}")


if __name__ == "__main__":  # `python -m mnist_edge.core.formats [FAMILY]`: what `export --quantize` writes
    import sys

    print(" ".join(f.filename for f in formats_to_write(sys.argv[1] if len(sys.argv) > 1 else "all", True)))
