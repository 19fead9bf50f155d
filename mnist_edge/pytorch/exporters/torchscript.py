"""TorchScript: traced and frozen (BatchNorm folded), the metadata in `_extra_files`."""

from __future__ import annotations

import copy
import io
from dataclasses import replace
from pathlib import Path

import torch

from mnist_edge.core.errors import ExportError
from mnist_edge.core.formats import Format
from mnist_edge.core.metadata import METADATA_KEY, ModelMetadata
from mnist_edge.core.quiet import quiet
from mnist_edge.pytorch.exporters.job import ExportJob, example_input


def _save(model: torch.nn.Module, meta: ModelMetadata, tmp: Path) -> None:
    buf = io.BytesIO()  # torch's zip writer aborts the process on a short write: fill memory, then the file
    with quiet(stdout=True), torch.no_grad():
        scripted = torch.jit.freeze(torch.jit.trace(model, example_input()).eval())
        torch.jit.save(scripted, buf, _extra_files={METADATA_KEY: meta.to_json()})
    tmp.write_bytes(buf.getvalue())  # a full disk is an OSError here, which the caller reports


def export_fp32(job: ExportJob, fmt: Format, tmp: Path) -> ModelMetadata:
    _save(job.model, job.metadata, tmp)
    return job.metadata


def export_int8(job: ExportJob, fmt: Format, tmp: Path) -> ModelMetadata:
    """Dynamic int8 quantization of the Linear layers with torch.ao.quantization."""
    with quiet():
        quant = getattr(getattr(torch, "ao", None), "quantization", None)
        if quant is None or not hasattr(quant, "quantize_dynamic"):
            raise ExportError(f"torch {torch.__version__} has no torch.ao.quantization.quantize_dynamic: "
                              "TorchScript int8 needs a torch release that still ships it (<= 2.14)")
        qmodel = quant.quantize_dynamic(copy.deepcopy(job.model), {torch.nn.Linear}, dtype=torch.qint8)
    meta = replace(job.metadata, quantization="torch dynamic int8 (Linear layers)")
    _save(qmodel, meta, tmp)
    return meta
