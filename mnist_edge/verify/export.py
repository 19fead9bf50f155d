"""`mnist-edge export`: every requested format written, verified against the checkpoint, then kept.

Each file is written under a temporary name in the output folder by its row's exporter, loaded back
through its row's loader, held to the parity tolerances against the PyTorch checkpoint on the test set,
and only then renamed into place. A failed export leaves any earlier good file untouched. A format
made from another one (int8 ONNX from fp32 ONNX, C from int8 ONNX) gets that one's verified file.
It sits with verification because parity decides what is kept; the exporters (pytorch/exporters) are
loaded by their rows' dotted paths and share only pytorch/exporters/job.py with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_edge.core import data
from mnist_edge.core.deps import installed
from mnist_edge.core.errors import ExportError, MnistEdgeError, ParityError, first_line
from mnist_edge.core.fileio import atomic_folder, atomic_path, ensure_writable, size_of
from mnist_edge.core.formats import FORMATS, INT8_ONNX, Format, formats_to_write, load_checkpoint, load_runtime, resolve
from mnist_edge.core.metadata import ModelMetadata
from mnist_edge.core.settings import ExportSettings
from mnist_edge.pytorch.exporters.job import ExportJob
from mnist_edge.verify.parity import FormatResult, Reference, compare, exact_reference, reference


@dataclass
class Exported:
    format: Format
    path: Path
    size_bytes: int
    parity: FormatResult


def calibration_images(settings: ExportSettings, meta: ModelMetadata) -> tuple[np.ndarray, data.Split]:
    """(normalised calibration images from the training set, the test split)."""
    train_split, test_split = data.load_dataset(settings.data_dir, meta.dataset)
    n = min(settings.calibration_samples, len(train_split))
    pick = np.sort(np.random.default_rng(0).choice(len(train_split), n, replace=False))
    return meta.normalize(train_split.images[pick]), test_split


def _verify(ref: Reference, fmt: Format, path: Path, dest: Path, settings: ExportSettings,
            siblings: dict[str, Path]) -> FormatResult:
    rt = fmt.load(path)
    sibling = load_runtime(siblings[fmt.reference]) if fmt.reference in siblings else None
    source = path if fmt.name == INT8_ONNX else siblings.get(INT8_ONNX)  # the int8 file it runs or is made from
    exact = exact_reference(source, ref) if fmt.exact_int8 and source else None
    result = compare(ref, rt, fmt, settings.tolerances, sibling=sibling, exact=exact)
    if not result.passed:
        raise ParityError(f"{dest}: not written, the export fails parity: " + "; ".join(result.failures))
    return result


def export_one(job: ExportJob, fmt: Format, ref: Reference) -> Exported:
    """Write one format to a temporary path, verify it, then move it into place."""
    dest = job.settings.out / fmt.filename
    exporter = resolve(fmt.exporter)
    with (atomic_folder(dest) if fmt.folder else atomic_path(dest, suffix=fmt.suffix)) as tmp:
        try:
            exporter(job, fmt, tmp)
        except (MnistEdgeError, OSError):
            raise  # ours already name the file; OSError becomes the write's one line
        except Exception as e:  # the exporters' own failures: one line, never a traceback
            raise ExportError(f"{dest}: {fmt.name} export failed ({first_line(e)})") from None
        result = _verify(ref, fmt, tmp, dest, job.settings, job.sources)
    return Exported(fmt, dest, size_of(dest), result)


def plan(settings: ExportSettings, say: Callable[[str], None]) -> list[Format]:
    """The formats to write; under `all`, those this machine cannot export are left out, each with one line."""
    formats = formats_to_write(settings.format, settings.quantize)
    if settings.format != "all":
        return formats
    kept: list[Format] = []
    for f in formats:
        missing = next((x for x in (f.export_extra, f.runtime_extra) if not installed(x)), None)
        why = f"install mnist-edge[{missing}] to export it" if missing else f.unavailable()
        if not why and f.source in FORMATS and FORMATS[f.source].exporter and FORMATS[f.source] not in kept:
            why = f"it is made from {f.source}, which was skipped"
        if why:
            say(f"skipped {f.name}: {why}")
        else:
            kept.append(f)
    return kept


def export_models(settings: ExportSettings, on_done: Callable[[Exported], None] | None = None,
                  say: Callable[[str], None] = lambda line: None) -> list[Exported]:
    """Export the checkpoint to each requested format, verifying each against it on the test set."""
    formats = plan(settings, say)
    ref_rt = load_checkpoint(settings.checkpoint)
    ensure_writable(settings.out, len(formats) * 2 * size_of(settings.checkpoint), "the exported models")
    meta = ref_rt.metadata
    if any(f.calibrated for f in formats):
        calibration, test_split = calibration_images(settings, meta)
    else:
        calibration, test_split = None, data.load_test_split(settings.data_dir, meta.dataset)
    ref = reference(ref_rt, test_split)
    job = ExportJob(ref_rt.model, meta, settings, calibration)
    done = []
    for f in formats:
        done.append(export_one(job, f, ref))
        job.sources[f.name] = done[-1].path
        if on_done:
            on_done(done[-1])
    return done
