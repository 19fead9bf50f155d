"""ExecuTorch exporters: model.pte (fp32) and model.int8.pte (int8), both lowered to XNNPACK.

Both programs take a FIXED batch of 1: torch 2.14's conv shape code narrows a dynamic batch to
[2, 15] during XNNPACK lowering, so the runtime loops over larger batches instead. The model's
metadata travels inside the .pte as a constant method (`METADATA_METHOD`) returning its JSON.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from mnist_edge.core import quiet as _quiet
from mnist_edge.core.deps import require
from mnist_edge.core.errors import ExportError
from mnist_edge.core.metadata import ModelMetadata
from mnist_edge.pytorch.exporters.job import example_input
from mnist_edge.pytorch.runtimes.executorch import CHECKSUM_METHOD, CHECKSUM_SLOT, METADATA_METHOD, file_sha256

EXTRA = "executorch"


def quiet():
    """Silence what torch.export / ExecuTorch / torchao print while exporting: not actionable. ExecuTorch
    routes its C++ log through Python's sys.stderr, and torch's loggers print import-time deprecation notes."""
    return _quiet.quiet(stdout=True, stderr=True, loggers=("torch",))


def _executorch():
    """The pieces of executorch's export side, or MissingExtraError naming the extra."""
    with quiet():
        partitioner = require("executorch.backends.xnnpack.partition.xnnpack_partitioner", EXTRA,
                              "exporting to ExecuTorch")
        exir = require("executorch.exir", EXTRA, "exporting to ExecuTorch")
        version = require("executorch.version", EXTRA, "exporting to ExecuTorch")
    return partitioner.XnnpackPartitioner, exir.to_edge_transform_and_lower, version.__version__


def _example(fmt) -> tuple:
    """The trace input: a batch of the one size the row's program takes (see the module docstring)."""
    return (example_input(fmt.batch_sizes[0]),)


def _with_versions(meta: ModelMetadata, et_version: str, quantization: str | None) -> ModelMetadata:
    """The metadata to store: the job's, plus the executorch version and the int8 recipe."""
    return replace(meta, versions={**meta.versions, "executorch": et_version}, quantization=quantization)


def _stamp_checksum(data: bytes, tmp: Path) -> bytes:
    """Write the file's SHA-256 into the checksum slot (same length, so nothing else moves)."""
    slot = CHECKSUM_SLOT.encode()
    if data.count(slot) != 1:
        raise ExportError(f"{tmp}: ExecuTorch wrote an unexpected .pte layout (checksum slot not found once)")
    return data.replace(slot, file_sha256(data).encode())


def _lower_and_save(exported, meta: ModelMetadata, tmp: Path) -> None:
    """Lower a torch.export program to XNNPACK, embed metadata and checksum, write the .pte at `tmp`."""
    partitioner_cls, lower, _ = _executorch()
    edge = lower(exported, partitioner=[partitioner_cls()],
                 constant_methods={METADATA_METHOD: meta.to_json(), CHECKSUM_METHOD: CHECKSUM_SLOT})
    tmp.write_bytes(_stamp_checksum(edge.to_executorch().buffer, tmp))


def export_fp32(job, fmt, tmp: Path) -> ModelMetadata:
    """model.pte: fp32, batch 1, every supported op delegated to XNNPACK (BatchNorm folded there)."""
    torch = require("torch")
    *_, et_version = _executorch()
    meta = _with_versions(job.metadata, et_version, None)
    with quiet(), torch.no_grad():
        exported = torch.export.export(job.model, _example(fmt))
        _lower_and_save(exported, meta, tmp)
    return meta


def _calibrate(prepared, images: np.ndarray, torch) -> None:
    """Run the calibration images one by one through the observed model (its batch is fixed at 1)."""
    with torch.no_grad():
        for i in range(len(images)):
            prepared(torch.from_numpy(np.ascontiguousarray(images[i:i + 1], dtype=np.float32)))


def export_int8(job, fmt, tmp: Path) -> ModelMetadata:
    """model.int8.pte: XNNPACK static int8 (PT2E), per-channel weights, calibrated on job.calibration."""
    torch = require("torch")
    *_, et_version = _executorch()
    if job.calibration is None or not len(job.calibration):
        raise ExportError(f"{tmp}: ExecuTorch int8 needs calibration images")
    with quiet():
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from torchao.quantization.pt2e import MinMaxObserver
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        config = get_symmetric_quantization_config(is_per_channel=True)
        # Activation ranges by min/max over the calibration images, as the ONNX int8 default calibrates
        # (XNNPACK's default is a histogram search): the two int8 models then quantize alike and predict
        # the same digit on all but a few of the 10,000 test images, without losing accuracy to histograms.
        minmax = MinMaxObserver.with_args(eps=2**-12)
        config = replace(config, input_activation=replace(config.input_activation, observer_or_fake_quant_ctr=minmax),
                         output_activation=replace(config.output_activation, observer_or_fake_quant_ctr=minmax))
        quantizer = XNNPACKQuantizer().set_global(config)
        graph = torch.export.export(job.model, _example(fmt)).module()
        prepared = prepare_pt2e(graph, quantizer)  # folds BatchNorm into the conv before observing
        _calibrate(prepared, job.calibration, torch)
        converted = convert_pt2e(prepared)
        how = (f"executorch XNNPACK static int8 (PT2E): symmetric per-channel weights, per-tensor "
               f"activations, {len(job.calibration)} calibration images (min/max)")
        meta = _with_versions(job.metadata, et_version, how)
        with torch.no_grad():
            _lower_and_save(torch.export.export(converted, _example(fmt)), meta, tmp)
    return meta
