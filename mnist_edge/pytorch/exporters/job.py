"""What every exporter gets: the job (model, metadata, settings, calibration images, source files) and the
example input it traces the model with. Torch-free at import, so the export orchestrator (verify/export.py)
and the exporters share it without either importing the other."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnist_edge.core.metadata import INPUT_SHAPE, ModelMetadata
from mnist_edge.core.settings import ExportSettings

EXPORT_BATCH = 2  # torch.export fixes a dimension traced at size 1, so a dynamic batch is traced at 2


@dataclass
class ExportJob:
    """What an exporter gets: the model, its metadata, calibration images and the files it is made from."""

    model: object  # torch.nn.Module in eval mode, fp32
    metadata: ModelMetadata
    settings: ExportSettings
    calibration: np.ndarray | None = None  # float32 (N, *INPUT_SHAPE), normalised training images
    sources: dict[str, Path] = field(default_factory=dict)  # verified files by format name


def example_input(batch: int = EXPORT_BATCH):
    """A zero batch (batch, *INPUT_SHAPE) to trace with; a format whose program takes one batch size passes it."""
    import torch

    return torch.zeros(batch, *INPUT_SHAPE)
