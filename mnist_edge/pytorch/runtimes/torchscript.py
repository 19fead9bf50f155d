"""TorchScript (model.ts, model.int8.ts): traced and frozen, deprecated in recent torch but working in 2.14."""

from __future__ import annotations

from pathlib import Path

import torch

from mnist_edge.core.errors import ModelFileError, first_line
from mnist_edge.core.formats import Format
from mnist_edge.core.metadata import METADATA_KEY, ModelMetadata
from mnist_edge.core.quiet import quiet
from mnist_edge.pytorch.runtimes.eager import TorchRuntime, set_threads


def load(path: Path, fmt: Format, threads: int | None = None) -> TorchRuntime:
    set_threads(threads)
    extra = {METADATA_KEY: ""}
    try:
        with quiet():  # torch.jit is deprecated in recent torch; it still works
            model = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as e:  # torch raises RuntimeError/ValueError/zip errors for a bad archive
        raise ModelFileError(f"{path}: corrupt or not a TorchScript model ({first_line(e, 120)})") from None
    if not extra[METADATA_KEY]:
        raise ModelFileError(f"{path}: not an mnist-edge model (no mnist-edge metadata)")
    meta = ModelMetadata.from_json(extra[METADATA_KEY], str(path))
    model.eval()
    return TorchRuntime(fmt.name, path, meta, model)
